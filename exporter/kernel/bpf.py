"""Compiling and attaching BPF programs with bcc; the only module that imports bcc."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.kernel.tracefs import Tracefs, TracepointFormat
from exporter.paths import bpf_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgramSpec:
    """One BPF handler: C function ``on_<event>`` attached to ``category:event``."""

    tracepoint: str
    required_fields: tuple[str, ...] = ()
    field_sizes: tuple[tuple[str, int], ...] = ()  # fields whose size must match exactly

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
        return f"tracepoint {spec.tracepoint} not in this kernel"
    missing = [name for name in spec.required_fields if name not in fmt.field_names]
    if missing:
        return f"{spec.tracepoint} lacks fields {', '.join(missing)}"
    for name, size in spec.field_sizes:
        field = fmt.field(name)
        if field is None or field.size != size:
            return f"{spec.tracepoint} field {name} is not {size} bytes"
    return None


def bpf_source(filename: str) -> str:
    return (bpf_dir() / filename).read_text()


def build_prelude(formats: Iterable[TracepointFormat], defines: Mapping[str, int | str]) -> str:
    """Argument structs and HAVE_TP_* markers for the tracepoints this kernel has."""
    parts = [f"#define {name} {value}" for name, value in defines.items()]
    for fmt in formats:
        parts.append(f"#define HAVE_TP_{fmt.category}_{fmt.event} 1")
        parts.append(fmt.c_struct())
    return "\n".join(parts) + "\n"


def bcc_version() -> str:
    try:
        import bcc

        return str(getattr(bcc, "__version__", "unknown"))
    except ImportError:
        return "missing"


def release_compiler_memory() -> None:
    """LLVM keeps freed arenas; hand them back once all programs are compiled."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        ctypes.CDLL(libc_name).malloc_trim(0)


class BpfProgram:
    """One compiled BPF source with its tracepoint handlers, each attached or not on its own."""

    def __init__(
        self,
        source_file: str,
        programs: Iterable[ProgramSpec],
        defines: Mapping[str, int | str],
        tracefs: Tracefs,
    ) -> None:
        self.attached: dict[str, bool] = {}
        self.problems: dict[str, str] = {}
        available: dict[str, TracepointFormat] = {}
        specs = list(programs)
        for spec in specs:
            fmt = tracefs.format(spec.tracepoint)
            problem = format_problem(spec, fmt)
            if problem:
                self.problems[spec.name] = problem
            else:
                available[spec.tracepoint] = fmt
        self.formats = available
        source = (
            build_prelude(available.values(), defines)
            + bpf_source("common.h")
            + bpf_source(source_file)
        )
        try:
            from bcc import BPF  # imported here: bcc is heavy and only the kernel layer needs it

            self._bpf: Any = BPF(text=source, cflags=["-w"])
        except ImportError as error:
            raise BpfLoadError(
                "bcc is not importable: install Debian's python3-bpfcc and use a venv made with "
                "--system-site-packages on /usr/bin/python3 (scripts/install.sh does both)"
            ) from error
        except Exception as error:  # bcc raises bare Exception on compile/load failures
            raise BpfLoadError(f"{source_file}: {error}") from error
        for spec in specs:
            self.attached[spec.name] = False
            if spec.tracepoint not in available:
                log.warning("program %s disabled: %s", spec.name, self.problems[spec.name])
                continue
            try:
                self._bpf.attach_tracepoint(tp=spec.tracepoint, fn_name=spec.function)
            except Exception as error:
                self.problems[spec.name] = str(error)
                log.warning("program %s not attached: %s", spec.name, error)
                continue
            self.attached[spec.name] = True

    def table(self, name: str) -> Any:
        return self._bpf[name]

    def close(self) -> None:
        """Detach every tracepoint and close the program and map FDs."""
        self._bpf.cleanup()
