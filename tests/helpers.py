"""Shared test tools: a real exporter process, scrapes, network namespaces as remote hosts."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from exporter.config import CollectorsConfig
from exporter.kernel.sysctl import local_port_range

REPO = Path(__file__).resolve().parents[1]


def only_collectors(*enabled: str, settings: str = "") -> str:
    """A config with only the ``enabled`` collectors (and watch, always on): quick to start.
    ``settings`` are more keys of those collectors, e.g. ``"tcp_resets: {map_size: 64}"``.
    The budget is wide so that other tests' traffic on this machine never folds ours into
    "other"."""
    lines = [
        f"  {name}: {{enabled: false}}"
        for name in CollectorsConfig.model_fields
        if name not in enabled and not settings.startswith(f"{name}:")
    ]
    extra = f"  {settings}\n" if settings else ""
    return (
        "collectors:\n"
        + "\n".join(lines)
        + "\n"
        + extra
        + ("cardinality:\n  series_per_metric: 1000000\n")
    )


ONLY_TCP = only_collectors("tcp_connections")
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    """A free TCP port below the kernel's ephemeral range: the exporter's default port policy
    folds ephemeral ports into port="other" (docs/security.md), tests want their own series."""
    low = local_port_range()[0]
    for _ in range(1000):
        port = random.randint(max(1024, low - 12000), low - 1)
        try:
            for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                with socket.socket(family) as probe:
                    probe.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port below the ephemeral range")


def parse_metrics(text: str) -> Series:
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    """Sum of the series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in series.items() if n == name and wanted <= lbls)


_LOGFMT_PAIR = r'([^\s="]+)=("(?:[^"\\\x00-\x1f]|\\.)*"|[^\s="\\]+)'
_LOGFMT_LINE = re.compile(rf"{_LOGFMT_PAIR}(?: {_LOGFMT_PAIR})*")
LOG_LEVELS = {"debug", "info", "warn", "error"}


def parse_logfmt(line: str) -> dict[str, str]:
    """Strict logfmt: key=value pairs split by one space, a value bare or double-quoted with
    JSON escapes; anything else (a bare space, a stray quote, a second line) is an error."""
    if not _LOGFMT_LINE.fullmatch(line):
        raise ValueError(f"not logfmt: {line!r}")
    pairs = re.findall(_LOGFMT_PAIR, line)
    return {key: json.loads(v) if v.startswith('"') else v for key, v in pairs}


def parse_log_line(line: str, log_format: str) -> dict[str, str]:
    """One line of the exporter's log, checked: RFC 3339 UTC time, lower-case level, message."""
    event = json.loads(line) if log_format == "json" else parse_logfmt(line)
    assert isinstance(event, dict) and set(event) >= {"ts", "level", "source", "msg"}, line
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["ts"]), line
    datetime.fromisoformat(event["ts"])
    assert event["level"] in LOG_LEVELS, line
    return event


def log_format_of(args: tuple[str, ...] | list[str]) -> str:
    formats = [arg.split("=", 1)[1] for arg in args if arg.startswith("--log.format=")]
    return formats[-1] if formats else "logfmt"


class ExporterProcess:
    """The real exporter, run as a separate process the way users run it; the tests' and the
    benchmark's (bench/tracers.py) one harness."""

    def __init__(
        self,
        config_text: str | None,
        tmp_path: Path,
        extra_args: tuple[str, ...] = (),
        prefix: tuple[str, ...] = (),  # a command that runs the exporter (capsh ... --)
        entry: tuple[str, ...] = ("-m", "exporter"),  # or a script that runs exporter.cli
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            *prefix,
            sys.executable,
            *entry,
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        if config_text is not None:
            config_file = tmp_path / "netsnoop.yaml"
            config_file.write_text(config_text)
            args.append(f"--config.file={config_file}")
        self.log_format = log_format_of(extra_args)
        self.log_path = tmp_path / f"exporter-{self.port}.log"  # stderr: the exporter's log
        self._log = self.log_path.open("wb")
        self._stdout = (tmp_path / f"exporter-{self.port}.stdout").open("wb")  # watch events
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [*args, *extra_args], cwd=REPO, stdout=self._stdout, stderr=self._log
        )

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from process start until /healthz answered 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exporter exited early:\n{self.log()}")
            with contextlib.suppress(OSError):
                if self.get("/healthz", timeout=1)[0] == 200:
                    return time.monotonic() - self.started_at
            time.sleep(0.02)  # the benchmark's time to /healthz is measured here too
        raise AssertionError(f"exporter not ready in {timeout}s:\n{self.log()}")

    def scrape(self) -> Series:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse_metrics(body.decode())

    def wait_for(
        self, name: str, labels: Mapping[str, str], target: float, timeout: float = 10.0
    ) -> Series:
        """Scrape until the summed series reach ``target``, then once more to catch overshoot."""
        deadline = time.monotonic() + timeout
        while True:
            series = self.scrape()
            if value(series, name, **labels) >= target or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(0.3)
        return self.scrape()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, str]]:
        """Every line the exporter logged, each parsed strictly in its --log.format."""
        return [parse_log_line(line, self.log_format) for line in self.log().splitlines()]

    def stop(self, timeout: float = 5.0) -> int:
        """Stops the exporter, and checks that every line of its log parses."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        events = self.log_events()
        self._log.close()
        self._stdout.close()
        assert events or self.process.returncode < 0, "the exporter logged nothing"
        return self.process.returncode


def watch_config(rule: str, port: int, log: Path) -> str:
    """A config that logs every outbound TCP attempt to ``port`` (rule ``rule``) to ``log``."""
    return f"""
watch:
  - name: {rule}
    protocol: tcp
    direction: outbound
    ports: [{port}]
    rate_limit: 0
event_log:
  path: "{log}"
"""


def named_python(directory: Path, comm: str) -> str:
    """A python3 reachable under another name, so the process's comm is ``comm``."""
    link = directory / comm
    if not link.exists():
        link.symlink_to(os.path.realpath(sys.executable))
    return str(link)


_namespace_ids = itertools.count(1)


def _free_subnet() -> int:
    """A 10.231.N.0/24 no interface uses yet, so concurrent test runs never share one."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(500):
        subnet = random.randint(1, 254)
        if f" 10.231.{subnet}." not in used:
            return subnet
    raise RuntimeError("no free 10.231.N.0/24 subnet for a test namespace")


@dataclass
class RemoteHost:
    """A network namespace joined to this host by a veth pair: a "remote host" whose traffic
    crosses a real interface. Addresses exist only inside this test's own namespaces."""

    name: str
    host_v4: str
    peer_v4: str
    host_v6: str
    peer_v6: str

    def run(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *command],
            check=True,
            capture_output=True,
            text=True,
            **kwargs,
        )

    def python(self, code: str, timeout: float = 60) -> str:
        return self.run(sys.executable, "-c", code, timeout=timeout).stdout


def filter_inbound(remote: RemoteHost, port: int, verdict: str) -> None:
    """An nftables rule inside the remote host's namespace for TCP to ``port``."""
    remote.run(
        "nft",
        "add table inet nst; add chain inet nst input "
        "{ type filter hook input priority 0; policy accept; }; "
        f"add rule inet nst input tcp dport {port} {verdict}",
    )


def drop_first_syn(remote: RemoteHost, port: int) -> None:
    """The remote host drops the first SYN from each client address and port to ``port`` and
    remembers it (an nftables dynamic set); the client's retransmit, about 1 s later (the
    initial RTO), passes: a connect delayed by one lost SYN."""
    flow = "ip saddr . tcp sport"
    remote.run(
        "nft",
        "add table inet nsyn; "
        "add set inet nsyn seen { type ipv4_addr . inet_service; flags dynamic, timeout; "
        "timeout 1m; }; "
        "add chain inet nsyn input { type filter hook input priority 0; policy accept; }; "
        f"add rule inet nsyn input tcp dport {port} tcp flags syn {flow} @seen accept; "
        f"add rule inet nsyn input tcp dport {port} tcp flags syn add @seen {{ {flow} }} drop",
    )


@contextlib.contextmanager
def remote_host() -> Iterator[RemoteHost]:
    index = next(_namespace_ids)
    subnet = _free_subnet()
    name = f"nsnoop{os.getpid()}x{index}"
    host_if, peer_if = f"nsh{os.getpid()}x{index}", f"nsp{os.getpid()}x{index}"
    host = RemoteHost(
        name,
        f"10.231.{subnet}.1",
        f"10.231.{subnet}.2",
        f"fd00:231:{subnet}::1",
        f"fd00:231:{subnet}::2",
    )

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", name)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        ip("link", "set", peer_if, "netns", name)
        ip("addr", "add", f"{host.host_v4}/24", "dev", host_if)
        ip("-6", "addr", "add", f"{host.host_v6}/64", "dev", host_if, "nodad")
        ip("link", "set", host_if, "up")
        ip("-n", name, "addr", "add", f"{host.peer_v4}/24", "dev", peer_if)
        ip("-n", name, "-6", "addr", "add", f"{host.peer_v6}/64", "dev", peer_if, "nodad")
        ip("-n", name, "link", "set", peer_if, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield host
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def bpf_unavailable_reason() -> str | None:
    """Why BPF end-to-end tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (loads BPF programs)"
    try:
        import bcc  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return "needs bcc (Debian python3-bpfcc) importable from this python"
    from exporter.kernel.preflight import headers_problem

    problem = headers_problem(os.uname().release)
    if problem:
        return problem
    if shutil.which("ip") is None:
        return "needs iproute2"
    return None
