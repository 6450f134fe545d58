"""Compiling and attaching BPF programs with bcc; the only module that imports bcc."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from exporter.kernel.bpf_stats import ProgramRunStats, program_run_stats
from exporter.kernel.maps import BpfMap
from exporter.kernel.tracefs import Tracefs, TracepointFormat
from exporter.paths import bpf_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgramSpec:
    """One BPF handler: C function ``on_<event>`` attached to ``category:event``."""

    tracepoint: str
    required_fields: tuple[str, ...] = ()
    field_sizes: tuple[tuple[str, int], ...] = ()  # fields whose size must match exactly
    attach_point: str = ""  # another tracepoint to attach to (config `tracepoints:`)

    @property
    def attach_to(self) -> str:
        return self.attach_point or self.tracepoint

    @property
    def name(self) -> str:
        return self.tracepoint.split(":", 1)[1]

    @property
    def function(self) -> str:
        return f"on_{self.name}"


class BpfLoadError(Exception):
    """The BPF source did not compile or load; the message carries bcc's reason."""


def format_problem(spec: ProgramSpec, fmt: TracepointFormat | None) -> str | None:
    """Why this kernel's tracepoint cannot feed the program, or None when it can."""
    if fmt is None:
        return f"tracepoint {spec.attach_to} not in this kernel"
    missing = [name for name in spec.required_fields if name not in fmt.field_names]
    if missing:
        return f"{spec.attach_to} lacks fields {', '.join(missing)}"
    for name, size in spec.field_sizes:
        field = fmt.field(name)
        if field is None or field.size != size:
            return f"{spec.attach_to} field {name} is not {size} bytes"
    return None


def bpf_source(filename: str) -> str:
    return (bpf_dir() / filename).read_text()


def enum_defines(prefix: str, names: Sequence[str]) -> dict[str, int]:
    """Each name's position as ``<PREFIX>_<NAME>``: the BPF side numbers what a Python tuple
    lists, so the two cannot drift apart."""
    return {f"{prefix}_{name.upper()}": index for index, name in enumerate(names)}


def build_prelude(formats: Iterable[TracepointFormat], defines: Mapping[str, int | str]) -> str:
    """Argument structs and HAVE_TP_* markers for the tracepoints this kernel has."""
    parts = [f"#define {name} {value}" for name, value in defines.items()]
    for fmt in formats:
        parts.append(f"#define HAVE_TP_{fmt.category}_{fmt.event} 1")
        parts.append(fmt.c_struct())
    return "\n".join(parts) + "\n"


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


class BpfProgram:
    """One compiled BPF source with its tracepoint handlers, each attached or not on its own."""

    def __init__(
        self,
        source_file: str,
        programs: Iterable[ProgramSpec],
        defines: Mapping[str, int | str],
        tracefs: Tracefs,
        shared_sources: Iterable[str] = (),  # pasted after common.h, e.g. "watch.h"
    ) -> None:
        self.attached: dict[str, bool] = {}
        self._event_tables: list[Any] = []
        self.problems: dict[str, str] = {}
        self.program_fds: dict[str, int] = {}  # of the attached programs, for their run stats
        available: dict[str, TracepointFormat] = {}
        specs = list(programs)
        for spec in specs:
            fmt = tracefs.format(spec.attach_to)
            problem = format_problem(spec, fmt)
            if problem:
                self.problems[spec.name] = problem
            elif fmt is not None:
                # named after the program's own tracepoint, whose struct the C handler expects
                category, event = spec.tracepoint.split(":", 1)
                available[spec.tracepoint] = replace(fmt, category=category, event=event)
        self.formats = available
        source = (
            build_prelude(available.values(), defines)
            + bpf_source("common.h")
            + "".join(bpf_source(name) for name in shared_sources)
            + bpf_source(source_file)
        )
        c_output: list[str] = []
        try:
            from bcc import BPF  # imported here: bcc is heavy and only the kernel layer needs it

            with c_output_logged(c_output):
                self._bpf: Any = BPF(text=source, cflags=["-w"])
        except ImportError as error:
            raise BpfLoadError(
                "bcc is not importable: install Debian's python3-bpfcc and use a venv made with "
                "--system-site-packages on /usr/bin/python3 (scripts/install.sh does both)"
            ) from error
        except Exception as error:  # bcc raises bare Exception on compile/load failures
            refused = any("Operation not permitted" in line for line in c_output)
            raise BpfLoadError(f"{source_file}: {error}{REFUSED if refused else ''}") from error
        for spec in specs:
            self.attached[spec.name] = False
            if spec.tracepoint not in available:
                log.warning("program %s disabled: %s", spec.name, self.problems[spec.name])
                continue
            try:
                with c_output_logged():
                    self._bpf.attach_tracepoint(tp=spec.attach_to, fn_name=spec.function)
            except Exception as error:
                self.problems[spec.name] = str(error)
                log.warning("program %s not attached: %s", spec.name, error)
                continue
            self.attached[spec.name] = True
            self.program_fds[spec.name] = self._bpf.load_func(
                spec.function, self._bpf.TRACEPOINT
            ).fd  # load_func returns the program attach_tracepoint already loaded

    def run_stats(self) -> dict[str, ProgramRunStats]:
        """Kernel run time and count per attached program (kept while bpf_stats is on)."""
        stats = {}
        for name, fd in self.program_fds.items():
            program_stats = program_run_stats(fd)
            if program_stats is not None:
                stats[name] = program_stats
        return stats

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
