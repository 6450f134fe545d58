"""What the BPF programs are, decided before bcc runs: each handler's tracepoint and fields,
each collector's part, and the plan of the one module they compile into (its text, one
dispatcher program per tracepoint, the map indexes). Pure: unit tests feed it formats and
sources."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from exporter.kernel.tracefs import TracepointFormat
from exporter.paths import bpf_dir


@dataclass(frozen=True)
class ProgramSpec:
    """One BPF handler: C function ``on_<event>`` attached to ``category:event``."""

    tracepoint: str
    required_fields: tuple[str, ...] = ()
    field_sizes: tuple[tuple[str, int], ...] = ()  # fields whose size must match exactly
    attach_point: str = ""  # another tracepoint to attach to (config `tracepoints:`)
    source: str = ""  # the shared header that holds the handler (socket_owners.h); "": its own

    @property
    def attach_to(self) -> str:
        return self.attach_point or self.tracepoint

    @property
    def name(self) -> str:
        return self.tracepoint.split(":", 1)[1]

    @property
    def function(self) -> str:
        return f"on_{self.name}"

    def handler(self, part: str) -> str:
        """The C handler NS_HANDLER names in ``part``'s section (or in its shared header's)."""
        return f"{Path(self.source).stem if self.source else part}__{self.function}"

    @property
    def marker(self) -> str:
        category, event = self.tracepoint.split(":", 1)
        return f"HAVE_TP_{category}_{event}"


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


def define_lines(defines: Mapping[str, int | str]) -> list[str]:
    return [f"#define {name} {value}" for name, value in defines.items()]


def undefine_lines(names: Iterable[str]) -> list[str]:
    return [f"#undef {name}" for name in names]


@dataclass(frozen=True)
class BpfPart:
    """One collector's share of a module: its source, its handlers and its values. ``defines``
    hold for its own section and for the shared headers it pastes; ``module_defines`` (NO_UID,
    the port-fold and cgroup switches) hold for the whole module and must agree between parts."""

    name: str
    source_file: str
    programs: tuple[ProgramSpec, ...]
    map_names: tuple[str, ...]
    defines: Mapping[str, int | str]
    module_defines: Mapping[str, int | str]
    shared_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dispatcher:
    """The one program attached to a tracepoint: it calls each handler in turn."""

    function: str
    attach_to: str
    handlers: tuple[str, ...]
    program: str  # the name the exporter's metrics give it: its handlers' program name
    parts: tuple[str, ...]  # the parts with a handler here; the first reports its run stats


@dataclass
class ModulePlan:
    """What one compile of several parts holds, decided from the tracepoint formats alone."""

    source: str
    dispatchers: list[Dispatcher]
    map_indexes: dict[str, int]
    problems: dict[tuple[str, str], str]  # (part, program) -> why it is left out


def merged_defines(parts: Sequence[BpfPart], field: str) -> dict[str, int | str]:
    """The parts' values of one kind, which must agree (else the parts compile apart); map
    sizes of a shared header take the largest asked."""
    merged: dict[str, int | str] = {}
    for part in parts:
        for name, value in getattr(part, field).items():
            known = merged.get(name, value)
            if known != value:
                if not (name.endswith("_MAP_SIZE") and isinstance(value, int)):
                    raise BpfLoadError(f"{name} is {known!r} in one part and {value!r} in another")
                value = max(int(known), value)
            merged[name] = value
    return merged


def plan_module(
    parts: Sequence[BpfPart],
    formats: Mapping[str, TracepointFormat | None],
    read_source: Callable[[str], str],
) -> ModulePlan:
    """The text of one bcc module for ``parts`` (formats: by attach point, None if absent):
    module-wide values, the argument structs, common.h, each shared header once, each part's
    source in a section of its own, and one dispatcher program per attach point."""
    problems: dict[tuple[str, str], str] = {}
    structs: dict[str, TracepointFormat] = {}
    usable: dict[str, list[ProgramSpec]] = {}  # per part, the handlers that compile
    for part in parts:
        usable[part.name] = []
        for spec in part.programs:
            fmt = formats.get(spec.attach_to)
            problem = format_problem(spec, fmt)
            if problem is not None or fmt is None:
                problems[(part.name, spec.name)] = problem or ""
                continue
            category, event = spec.tracepoint.split(":", 1)
            struct = replace(fmt, category=category, event=event)  # named as the handler expects
            if structs.setdefault(spec.tracepoint, struct) != struct:
                raise BpfLoadError(f"{spec.tracepoint} is attached at two tracepoints")
            usable[part.name].append(spec)
    map_indexes: dict[str, int] = {}
    for part in parts:
        for name in part.map_names:
            map_indexes.setdefault(name, len(map_indexes))
    lines = [
        f"#define NS_MAP_COUNT {max(len(map_indexes), 1)}",
        *define_lines({f"MAP_{name.upper()}": index for name, index in map_indexes.items()}),
        *define_lines(merged_defines(parts, "module_defines")),
        *(fmt.c_struct() for fmt in structs.values()),
        read_source("common.h"),
    ]

    def section(name: str, text: str, defines: Mapping[str, int | str], markers: set[str]) -> None:
        values = {"NS_PART": name, **defines, **dict.fromkeys(sorted(markers), 1)}
        lines.extend([*define_lines(values), text, *undefine_lines(values)])

    headers = list(dict.fromkeys(h for part in parts for h in part.shared_sources))
    for header in headers:
        users = [part for part in parts if header in part.shared_sources]
        markers = {spec.marker for part in users for spec in usable[part.name]}
        section(Path(header).stem, read_source(header), merged_defines(users, "defines"), markers)
    for part in parts:
        own = {spec.marker for spec in usable[part.name] if not spec.source}
        section(part.name, read_source(part.source_file), part.defines, own)
    dispatchers = plan_dispatchers(parts, usable)
    lines.append(dispatcher_source(dispatchers))
    return ModulePlan("\n".join(lines), dispatchers, map_indexes, problems)


def plan_dispatchers(
    parts: Sequence[BpfPart], usable: Mapping[str, list[ProgramSpec]]
) -> list[Dispatcher]:
    """One program per attach point; a shared header's handler runs once, before the parts'
    own, however many parts paste the header."""
    handlers: dict[str, dict[str, ProgramSpec]] = {}  # attach point -> handler -> its spec
    users: dict[str, dict[str, None]] = {}  # attach point -> the parts with a handler there
    for shared in (True, False):
        for part in parts:
            for spec in usable[part.name]:
                if bool(spec.source) == shared:
                    handlers.setdefault(spec.attach_to, {}).setdefault(
                        spec.handler(part.name), spec
                    )
                    users.setdefault(spec.attach_to, {})[part.name] = None
    dispatchers: list[Dispatcher] = []
    for attach_to, found in handlers.items():
        category, event = attach_to.split(":", 1)
        function = f"on_{event}"
        if any(d.function == function for d in dispatchers):
            function = f"on_{category}_{event}"
        first_spec = next(iter(found.values()))
        dispatchers.append(
            Dispatcher(function, attach_to, tuple(found), first_spec.name, tuple(users[attach_to]))
        )
    return dispatchers


def dispatcher_source(dispatchers: Iterable[Dispatcher]) -> str:
    return "".join(
        f"int {d.function}(void *args)\n{{\n"
        + "".join(f"    {handler}(args);\n" for handler in d.handlers)
        + "    return 0;\n}\n"
        for d in dispatchers
    )
