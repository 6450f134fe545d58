"""Command line: flags in the Prometheus exporter style, clean exits, no tracebacks for users."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from exporter import __version__
from exporter.config import ConfigError, default_config_path, load_config
from exporter.kernel.preflight import EnvironmentProblem, check_environment
from exporter.otlp import (
    OtlpOutput,
    OtlpSettingsError,
    missing_package_problem,
    resolve_settings,
    resource_attributes,
    sdk_modules,
)
from exporter.prometheus import Exposition
from exporter.runtime import Exporter
from exporter.web import ExporterServer, ListenAddressError, parse_listen_address
from exporter.webconfig import load_web_config

log = logging.getLogger("netsnoop")

EXIT_CONFIG = 2
EXIT_ENVIRONMENT = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netsnoop-exporter",
        description="eBPF network exporter: TCP/UDP connections per port, process and uid.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=str(default_config_path()),
        help="YAML configuration file (default: the bundled config/netsnoop.yaml)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=":19435",
        help="address to serve metrics on (default :19435)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default="",
        help="exporter-toolkit web config: TLS and basic auth (docs/security.md)",
    )
    parser.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        help="path under which to expose metrics (default /metrics)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=["debug", "info", "warn", "error"],
        help="only log messages at or above this level",
    )
    parser.add_argument("--version", action="version", version=f"netsnoop-exporter {__version__}")
    return parser


def fail(message: str, status: int) -> int:
    print(f"netsnoop-exporter: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = "WARNING" if args.log_level == "warn" else args.log_level.upper()
    logging.basicConfig(
        level=level, format="ts=%(asctime)s level=%(levelname)s source=%(name)s msg=%(message)s"
    )
    try:
        config = load_config(args.config_file)
    except ConfigError as error:
        return fail(str(error), EXIT_CONFIG)
    if not args.telemetry_path.startswith("/") or args.telemetry_path in ("/", "/healthz"):
        return fail(f"--web.telemetry-path {args.telemetry_path!r}: must be a free path", 2)
    try:
        address = parse_listen_address(args.listen_address)
        security = load_web_config(args.web_config_file) if args.web_config_file else None
    except (ListenAddressError, ConfigError) as error:
        return fail(str(error), EXIT_CONFIG)
    try:
        otlp_settings = resolve_settings(config.otlp, os.environ)
    except OtlpSettingsError as error:
        return fail(str(error), EXIT_CONFIG)
    if otlp_settings.enabled and (
        problem := missing_package_problem(sdk_modules(otlp_settings.protocol))
    ):
        return fail(problem, EXIT_ENVIRONMENT)
    try:
        check_environment()
    except EnvironmentProblem as error:
        return fail(str(error), EXIT_ENVIRONMENT)

    try:
        exporter = Exporter(config)
    except ConfigError as error:  # checks that need the collectors, e.g. tracepoints:
        return fail(f"{args.config_file}: {error}", EXIT_CONFIG)
    try:
        server = ExporterServer(
            address,
            Exposition(exporter.snapshots),
            args.telemetry_path,
            exporter.ready,
            security,
        )
    except OSError as error:
        return fail(f"cannot listen on {args.listen_address}: {error.strerror}", EXIT_ENVIRONMENT)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def reload(signum: int, frame: FrameType | None) -> None:
        exporter.reopen_files()
        try:
            exporter.reload(load_config(args.config_file))
        except ConfigError as error:
            log.error("config reload failed, running on: %s", error)
            return
        log.info("config reloaded from %s", args.config_file)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, reload)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
    ).start()
    log.info("listening on %s", args.listen_address)
    began = time.monotonic()
    exporter.start()
    log.info("ready in %.2fs", time.monotonic() - began)
    otlp = None
    if otlp_settings.enabled:
        resource = resource_attributes(config.kubernetes.node_name, os.environ)
        otlp = OtlpOutput(otlp_settings, exporter.snapshots, resource)
        exporter.output_metrics.append(otlp.self_metrics)
        otlp.start()
    while not stop.wait(3600):
        pass
    log.info("shutting down")
    server.shutdown()
    server.server_close()
    if otlp is not None:
        otlp.close()  # a last export, while the collectors can still be read
    exporter.close()
    return 0
