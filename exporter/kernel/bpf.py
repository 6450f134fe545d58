"""Compiling and attaching BPF programs with bcc; the only module that imports bcc."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from exporter.kernel.bpf_stats import ProgramRunStats, program_run_stats
from exporter.kernel.counters import EpochClock
from exporter.kernel.maps import BpfMap
from exporter.kernel.programs import BpfLoadError, BpfPart, bpf_source, plan_module
from exporter.kernel.tracefs import Tracefs

log = logging.getLogger(__name__)


def bcc_version() -> str:
    try:
        import bcc  # type: ignore[import-untyped]

        return str(getattr(bcc, "__version__", "unknown"))
    except ImportError:
        return "missing"


MADV_DONTNEED = 4
COMPILER_LIBRARIES = ("libLLVM", "libclang")


def clean_compiler_mappings(smaps: str) -> list[tuple[int, int]]:
    """(start, length) of the LLVM and clang library mappings in a /proc/<pid>/smaps text
    that are read-only and hold no private copy of a page (``Anonymous: 0``), so dropping
    their pages loses nothing: the file gives the same bytes back if they are touched."""
    ranges = []
    current: tuple[int, int] | None = None
    for line in smaps.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            current = None
            library = fields[5].rsplit("/", 1)[-1] if len(fields) >= 6 else ""
            if library.startswith(COMPILER_LIBRARIES) and "w" not in fields[1]:
                start, end = (int(address, 16) for address in fields[0].split("-"))
                current = (start, end - start)
        elif current is not None and fields[:1] == ["Anonymous:"] and fields[1] == "0":
            ranges.append(current)
            current = None
    return ranges


def release_compiler_memory(smaps_path: Path = Path("/proc/self/smaps")) -> None:
    """Hand back what compiling cost once all programs are loaded: LLVM's freed arenas
    (malloc_trim), and the 80+ MB of LLVM/clang library pages the compile touched, which
    nothing reads again (programs are never recompiled: a reload keeps them). Only clean,
    read-only file pages are dropped (MADV_DONTNEED), so no content is ever lost; were LLVM
    needed again, its pages would fault back in from the library file."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.malloc_trim(0)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for start, length in clean_compiler_mappings(smaps_path.read_text()):
        libc.madvise(start, length, MADV_DONTNEED)


REFUSED = (
    "; bpf() was refused (EPERM) although the capabilities are there: a seccomp profile (a "
    "container runtime's default) or kernel lockdown (/sys/kernel/security/lockdown) forbids it"
)


@contextlib.contextmanager
def c_output_logged(lines: list[str] | None = None) -> Iterator[None]:
    """bcc and libbpf print to descriptor 2 ("could not open bpf map: ..."): catch it and log
    each line, so that every line of the exporter's stderr stays logfmt or JSON. The lines
    are also appended to ``lines``, for the error message."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                if line.strip():
                    log.warning("bcc: %s", line.strip())
                    if lines is not None:
                        lines.append(line.strip())


class BpfModule:
    """One bcc compile for the parts of any number of collectors. Each tracepoint gets one
    program, which runs every part's handler in turn: an event costs one program run, and the
    compiler runs once, whatever the number of collectors. A handler the kernel cannot feed is
    left out on its own; each part reads its maps through its view, ``program(name)``."""

    def __init__(self, parts: Sequence[BpfPart], tracefs: Tracefs) -> None:
        self.parts = {part.name: part for part in parts}
        attach_points = {spec.attach_to for part in parts for spec in part.programs}
        plan = plan_module(
            parts, {point: tracefs.format(point) for point in attach_points}, bpf_source
        )
        self.plan = plan
        self._bpf = compile_module(plan.source, ", ".join(self.parts))
        self._event_tables: list[Any] = []
        self.attached: dict[str, bool] = {}  # per dispatcher function
        self.problems: dict[tuple[str, str], str] = dict(plan.problems)
        self.program_fds: dict[str, int] = {}
        self.shared_failures: list[str] = []  # programs of several parts that did not attach
        for dispatcher in plan.dispatchers:
            self.attached[dispatcher.function] = False
            try:
                with c_output_logged():
                    self._bpf.attach_tracepoint(
                        tp=dispatcher.attach_to, fn_name=dispatcher.function
                    )
            except Exception as error:
                log.warning("program %s not attached: %s", dispatcher.function, error)
                if len(dispatcher.parts) > 1:
                    self.shared_failures.append(dispatcher.function)
                for part in parts:
                    for spec in part.programs:
                        if spec.attach_to == dispatcher.attach_to:
                            self.problems.setdefault((part.name, spec.name), str(error))
                continue
            self.attached[dispatcher.function] = True
            self.program_fds[dispatcher.function] = self._bpf.load_func(
                dispatcher.function, self._bpf.TRACEPOINT
            ).fd  # load_func returns the program attach_tracepoint already loaded
        for (part_name, program), problem in self.problems.items():
            log.warning("program %s of %s disabled: %s", program, part_name, problem)
        self.epochs = EpochClock(BpfMap(self._bpf["counter_epoch"]))
        self._open_views = set(self.parts)

    def program(self, part: str) -> BpfProgram:
        return BpfProgram(self, self.parts[part])

    def table(self, name: str) -> BpfMap:
        return BpfMap(self._bpf[name])

    def open_events(
        self,
        table_name: str,
        handle: Callable[[Any], None],
        lost: Callable[[int], None],
        pages: int,
    ) -> None:
        """Deliver a BPF_PERF_OUTPUT's records, decoded into ctypes structs, to ``handle``
        from poll_events(); ``lost`` gets the count of records the full buffer dropped."""
        events = self._bpf[table_name]
        events.open_perf_buffer(
            lambda cpu, data, size: handle(events.event(data)), page_cnt=pages, lost_cb=lost
        )
        self._event_tables.append(events)

    def poll_events(self, timeout_ms: int) -> None:
        self._bpf.perf_buffer_poll(timeout_ms)

    def release(self, part: str) -> None:
        """A part is done with the module; the last one detaches and closes it."""
        self._open_views.discard(part)
        if not self._open_views:
            self.close()

    def close(self) -> None:
        """Detach every tracepoint and close the program and map FDs."""
        # The callback closes a reference cycle through the table, so bcc's own cleanup would
        # leave its per-CPU buffers to a garbage collection after the map FD is gone (KeyError
        # at exit); free them while the map is still open.
        from bcc.utils import get_online_cpus  # type: ignore[import-untyped]

        for events in self._event_tables:
            for cpu in get_online_cpus():
                del events[cpu]
        self._event_tables.clear()
        # Each detach waits for the kernel to quiesce the tracepoint (tens of ms); done side by
        # side they cost about one wait, which keeps SIGTERM-to-exit well under 2 s.
        attached = list(self._bpf.tracepoint_fds)
        if attached:
            with ThreadPoolExecutor(max_workers=len(attached)) as pool:
                list(pool.map(self._bpf.detach_tracepoint, attached))
        self._bpf.cleanup()


def compile_module(source: str, what: str) -> Any:
    c_output: list[str] = []
    try:
        from bcc import BPF  # imported here: bcc is heavy and only the kernel layer needs it

        with c_output_logged(c_output):
            return BPF(text=source, cflags=["-w"])
    except ImportError as error:
        raise BpfLoadError(
            "bcc is not importable: install Debian's python3-bpfcc and use a venv made with "
            "--system-site-packages on /usr/bin/python3 (scripts/install.sh does both)"
        ) from error
    except Exception as error:  # bcc raises bare Exception on compile/load failures
        refused = any("Operation not permitted" in line for line in c_output)
        raise BpfLoadError(f"{what}: {error}{REFUSED if refused else ''}") from error


class BpfProgram:
    """A collector's view of its module: its handlers, each attached or not, and its maps."""

    def __init__(self, module: BpfModule, part: BpfPart) -> None:
        self.module = module
        self.part = part
        self.epochs = module.epochs
        self.problems = {
            program: problem
            for (name, program), problem in module.problems.items()
            if name == part.name
        }
        functions = {d.attach_to: d.function for d in module.plan.dispatchers}
        self.attached = {
            spec.name: spec.name not in self.problems
            and module.attached.get(functions.get(spec.attach_to, ""), False)
            for spec in part.programs
        }

    def map_index(self, name: str) -> int:
        """The map's index in map_update_failures (MAP_<NAME> in the source)."""
        return self.module.plan.map_indexes[name]

    def run_stats(self) -> dict[str, ProgramRunStats]:
        """Kernel run time and count of the programs this part reports (each program once
        per module: by the first part with a handler in it), while bpf_stats is on."""
        stats = {}
        for dispatcher in self.module.plan.dispatchers:
            fd = self.module.program_fds.get(dispatcher.function)
            if dispatcher.parts[0] != self.part.name or fd is None:
                continue
            program_stats = program_run_stats(fd)
            if program_stats is not None:
                stats[dispatcher.program] = program_stats
        return stats

    def table(self, name: str) -> BpfMap:
        return self.module.table(name)

    def close(self) -> None:
        self.module.release(self.part.name)
