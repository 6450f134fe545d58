"""The tools that trace the workload: netsnoop-exporter itself, and its peers (bcc's per-event
tools, a bpftrace one-liner counting in a map). Each is started before and stopped after the
runs it traces, so the runs between them see no tracer at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from tests.helpers import ExporterProcess

START_TIMEOUT_S = 120.0
SCRAPE_INTERVAL_S = 1.0

# The bpftrace peer: connect() attempts by process, port and uid, counted in a map, the same
# key netsnoop's outbound counter has (CLOSE->SYN_SENT runs in the caller's context).
BPFTRACE_PROGRAM = (
    "tracepoint:sock:inet_sock_set_state "
    "/args->protocol == 6 && args->oldstate == 7 && args->newstate == 2/ "
    "{ @[comm, args->dport, uid] = count(); }"
)


class ToolUnavailable(Exception):
    """The tool cannot run here; the message says why (shown in the report)."""


def stop_process(process: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Netsnoop:
    """The real exporter, as users run it (the tests' ExporterProcess), scraped every second
    while it traces."""

    name = "netsnoop-exporter"

    def __init__(self, config_text: str | None = None) -> None:
        self.config_text = config_text
        self.exporter: ExporterProcess | None = None
        self.note = ""
        self.startup_seconds = 0.0
        self._stop_scraping = threading.Event()
        self._scraper: threading.Thread | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="netsnoop-bench-"))

    @property
    def pid(self) -> int:
        assert self.exporter is not None
        return self.exporter.process.pid

    def start(self, scrape_every_second: bool = True) -> None:
        self.exporter = ExporterProcess(self.config_text, self._workdir)
        try:
            self.startup_seconds = self.exporter.wait_ready(START_TIMEOUT_S)
        except AssertionError:
            tail = self.log_tail()
            self.stop()
            raise ToolUnavailable(f"not ready in {START_TIMEOUT_S:.0f}s: {tail}") from None
        if scrape_every_second:
            self._stop_scraping.clear()
            self._scraper = threading.Thread(target=self._scrape_loop, daemon=True)
            self._scraper.start()

    def _scrape_loop(self) -> None:
        while not self._stop_scraping.wait(SCRAPE_INTERVAL_S):
            with contextlib.suppress(OSError):
                self.get("/metrics")

    def get(self, path: str, timeout: float = 60.0) -> tuple[int, bytes]:
        assert self.exporter is not None
        return self.exporter.get(path, timeout)

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return body.decode()

    def log_tail(self) -> str:
        if self.exporter is None:
            return ""
        return " | ".join(self.exporter.log().splitlines()[-3:])

    def stop(self) -> None:
        self._stop_scraping.set()
        if self._scraper is not None:
            self._scraper.join()
            self._scraper = None
        if self.exporter is not None:
            self.exporter.stop(timeout=15)
            self.exporter = None


class TracerProcess:
    """A peer tool, ready once a line of its output starts with ``ready_marker``. The output is
    drained as fast as it comes, the way a user piping it to a file would."""

    def __init__(self, name: str, command: list[str], ready_marker: str, note: str = "") -> None:
        self.name = name
        self.command = command
        self.ready_marker = ready_marker
        self.note = note
        self.process: subprocess.Popen | None = None
        self.output_lines = 0
        self._tail: deque[str] = deque(maxlen=5)
        self._ready = threading.Event()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.output_lines = 0
        self._ready.clear()
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ToolUnavailable(" | ".join(self._tail) or "exited without output")
        time.sleep(0.5)  # let the tool settle (its first poll, page faults) before measuring

    def _drain(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output_lines += 1
            stripped = line.strip()
            if stripped and "warning" not in stripped and not stripped.startswith(("In file", "^")):
                self._tail.append(stripped[:200])
            if line.startswith(self.ready_marker):
                self._ready.set()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGINT)
            self.process = None


def older_header_trees(machine: str = os.uname().machine) -> list[Path]:
    """Debian header trees (``linux-headers-<version>-<arch>``) other than the one
    /lib/modules/$(uname -r)/build points to, newest first."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    build = Path("/lib/modules", os.uname().release, "build")
    current = build.resolve() if build.exists() else None
    trees = [
        tree
        for tree in Path("/usr/src").glob(f"linux-headers-*-{arch}")
        if tree.resolve() != current and tree.with_name(common_tree_name(tree)).is_dir()
    ]
    return sorted(trees, reverse=True)


def common_tree_name(arch_tree: Path) -> str:
    return arch_tree.name.rsplit("-", 1)[0] + "-common"


def with_headers(command: list[str], arch_tree: Path, scratch: Path) -> list[str]:
    """``command`` run in a private mount namespace where /lib/modules/$(uname -r) holds
    ``arch_tree``: bcc's own tools compile against whatever headers sit there, and Debian's
    bcc 0.26 fails on headers newer than itself. Nothing outside that process sees the change."""
    scratch.mkdir(parents=True, exist_ok=True)
    for link, target in (
        ("build", arch_tree),
        ("source", arch_tree.with_name(common_tree_name(arch_tree))),
    ):
        (scratch / link).unlink(missing_ok=True)
        (scratch / link).symlink_to(target)
    modules = Path("/lib/modules", os.uname().release)
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, "sh", str(scratch), str(modules), *command]


def bcc_tool(tool: str, scratch: Path) -> TracerProcess:
    """One of Debian's bpfcc-tools, with the running kernel's headers, or else the newest
    older header tree it compiles with."""
    path = shutil.which(f"{tool}-bpfcc") or f"/usr/sbin/{tool}-bpfcc"
    if not Path(path).exists():
        raise ToolUnavailable(f"{tool}-bpfcc not installed (apt-get install bpfcc-tools)")
    attempts = [([path], "")] + [
        (with_headers([path], tree, scratch / tree.name), f"compiled against {tree.name}")
        for tree in older_header_trees()
    ]
    problems = []
    for command, note in attempts:
        tracer = TracerProcess(tool, command, "PID", note)
        try:
            tracer.start()
        except ToolUnavailable as error:
            problems.append(str(error))
            if "Failed to compile" in str(error):
                continue  # these headers do not build: try the next tree
            raise
        tracer.stop()
        return tracer
    raise ToolUnavailable(problems[-1] if problems else f"{tool}: no kernel headers")


def bpftrace_counter() -> TracerProcess:
    path = shutil.which("bpftrace")
    if path is None:
        raise ToolUnavailable("bpftrace not installed (apt-get install bpftrace)")
    return TracerProcess("bpftrace", [path, "-e", BPFTRACE_PROGRAM], "Attaching")
