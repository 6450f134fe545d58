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

from exporter import __version__, logs
from exporter.collectors.registry import configurable_collectors, with_collector_switches
from exporter.config import Config, ConfigError, default_config_path, load_config
from exporter.kernel import hostfs
from exporter.kernel.preflight import EnvironmentProblem, check_environment
from exporter.outputs.otlp import (
    OtlpOutput,
    OtlpSettingsError,
    missing_package_problem,
    resolve_settings,
    resource_attributes,
    sdk_modules,
)
from exporter.outputs.prometheus import Exposition
from exporter.outputs.web import ExporterServer, Limits, ListenAddressError, parse_listen_address
from exporter.outputs.webconfig import load_web_config, parse_duration
from exporter.runtime import Exporter

log = logging.getLogger("netsnoop")

EXIT_CONFIG = 2
EXIT_ENVIRONMENT = 1
DEFAULT_LISTEN_ADDRESS = ":19435"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netsnoop-exporter",
        description="eBPF network exporter: TCP/UDP connections per port, process and uid.",
        epilog="netsnoop-exporter top --help: the live view of a running exporter.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=str(default_config_path()),
        help="YAML configuration file (default: the bundled config/netsnoop.yaml)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_addresses",
        action="append",
        metavar="ADDRESS",
        help=f"address to serve metrics on; repeat for several (default {DEFAULT_LISTEN_ADDRESS})",
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
        "--path.procfs",
        dest="procfs",
        default="/proc",
        help="procfs mount point, e.g. the host's mounted in a container (default /proc)",
    )
    parser.add_argument(
        "--path.sysfs",
        dest="sysfs",
        default="/sys",
        help="sysfs mount point; tracefs is looked for under it (default /sys)",
    )
    parser.add_argument(
        "--web.disable-exporter-metrics",
        dest="disable_exporter_metrics",
        action="store_true",
        help="leave out the exporter's own process_* metrics (RSS, CPU, FDs)",
    )
    defaults = Limits()
    for flag, dest, text in (
        ("--web.max-requests", "max_requests", "parallel scrapes; more get 503 (0: no limit)"),
        ("--web.max-connections", "max_connections", "open connections; past it an idle or"
            " slow one is closed"),
        ("--web.max-connections-per-client", "max_connections_per_client", "open connections"
            " per client address (0: no limit)"),
    ):  # fmt: skip
        default = getattr(defaults, dest)
        parser.add_argument(
            flag, dest=dest, type=int, default=default, help=f"{text}; default {default}"
        )
    parser.add_argument(
        "--web.read-header-timeout",
        dest="read_header_timeout",
        default="5s",
        help="time for the TLS handshake and a request's line and headers (default 5s)",
    )
    parser.add_argument(
        "--web.idle-timeout",
        dest="idle_timeout",
        default="2m",
        help="keep-alive connections idle longer are closed (default 2m)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=list(logs.LEVELS),
        help="only log messages at or above this level",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=logs.FORMATS,
        help="output format of log messages, one per line on stderr (default logfmt)",
    )
    for spec in configurable_collectors():
        parser.add_argument(
            f"--collector.{spec.name}",
            dest=f"collector.{spec.name}",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{spec.summary} (default: collectors.{spec.name}.enabled of the config, "
            f"{'on' if spec.enabled_by_default else 'off'} when unset)",
        )
    parser.add_argument("--version", action="version", version=f"netsnoop-exporter {__version__}")
    return parser


def collector_switches(args: argparse.Namespace) -> dict[str, bool]:
    """The --[no-]collector.<name> flags given, by collector name."""
    return {
        spec.name: getattr(args, f"collector.{spec.name}")
        for spec in configurable_collectors()
        if getattr(args, f"collector.{spec.name}") is not None
    }


def read_config(args: argparse.Namespace) -> Config:
    """The config file with the collector flags over it (at start and on SIGHUP)."""
    return with_collector_switches(load_config(args.config_file), collector_switches(args))


def server_limits(args: argparse.Namespace) -> Limits:
    """The --web.* limits, or ValueError naming the flag."""
    for flag, number, least in (
        ("--web.max-requests", args.max_requests, 0),
        ("--web.max-connections", args.max_connections, 1),
        ("--web.max-connections-per-client", args.max_connections_per_client, 0),
    ):
        if number < least:
            raise ValueError(f"{flag} {number}: must be at least {least}")
    timeouts = []
    for flag, text in (
        ("--web.read-header-timeout", args.read_header_timeout),
        ("--web.idle-timeout", args.idle_timeout),
    ):
        seconds = parse_duration(text)
        if not seconds:
            raise ValueError(f"{flag} {text!r}: expected a duration above 0, such as 5s or 2m")
        timeouts.append(seconds)
    return Limits(
        max_requests=args.max_requests,
        max_connections=args.max_connections,
        max_connections_per_client=args.max_connections_per_client,
        read_header_timeout_s=timeouts[0],
        idle_timeout_s=timeouts[1],
    )


def fail(message: str, status: int) -> int:
    log.error(message)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["top"]:  # a client of a running exporter: none of the flags below apply
        from exporter import top

        return top.main(argv[1:])
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        config = read_config(args)
    except ConfigError as error:
        return fail(str(error), EXIT_CONFIG)
    if not args.telemetry_path.startswith("/") or args.telemetry_path in ("/", "/healthz"):
        return fail(f"--web.telemetry-path {args.telemetry_path!r}: must be a free path", 2)
    listen_addresses = args.listen_addresses or [DEFAULT_LISTEN_ADDRESS]
    try:
        addresses = [parse_listen_address(address) for address in listen_addresses]
        limits = server_limits(args)
        security = load_web_config(args.web_config_file) if args.web_config_file else None
    except (ListenAddressError, ValueError, ConfigError) as error:
        return fail(str(error), EXIT_CONFIG)
    try:
        otlp_settings = resolve_settings(config.otlp, os.environ)
    except OtlpSettingsError as error:
        return fail(str(error), EXIT_CONFIG)
    if otlp_settings.enabled and (
        problem := missing_package_problem(sdk_modules(otlp_settings.protocol))
    ):
        return fail(problem, EXIT_ENVIRONMENT)
    hostfs.configure(args.procfs, args.sysfs)
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
            addresses,
            Exposition(exporter.snapshots, process_metrics=not args.disable_exporter_metrics),
            args.telemetry_path,
            exporter.ready,
            security,
            limits,
        )
    except OSError as error:
        listening = " ".join(listen_addresses)
        return fail(f"cannot listen on {listening}: {error.strerror}", EXIT_ENVIRONMENT)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def reload(signum: int, frame: FrameType | None) -> None:
        exporter.reopen_files()
        try:
            exporter.reload(read_config(args))
        except ConfigError as error:
            log.error("config reload failed, running on: %s", error)
        else:
            log.info("config reloaded from %s", args.config_file)
        if args.web_config_file:
            try:
                server.security = load_web_config(args.web_config_file)
            except ConfigError as error:
                log.error("web config reload failed, running on: %s", error)
            else:
                log.info("web config reloaded from %s", args.web_config_file)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, reload)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("listening on %s", " ".join(listen_addresses))
    began = time.monotonic()
    exporter.start()
    if exporter.ready.is_set():
        log.info("ready in %.2fs", time.monotonic() - began)
    else:
        log.error("started in %.2fs, not ready: /healthz answers 503", time.monotonic() - began)
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
