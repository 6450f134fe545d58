"""Tracepoint formats read from tracefs, turned into C structs for bcc.

bcc's TRACEPOINT_PROBE builds its argument struct from the kernel headers, which breaks when
the headers do not match the running kernel (enum-typed fields such as ``enum sk_rst_reason``
are missing from older headers). We build the struct from the running kernel's own format file
instead, choosing integer types by size, so only offsets and sizes matter.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from exporter.kernel import hostfs


def tracefs_candidates() -> tuple[Path, Path]:
    """Where tracefs is mounted: its own mount point, or the older one under debugfs."""
    return hostfs.sysfs("kernel/tracing"), hostfs.sysfs("kernel/debug/tracing")


_FIELD_RE = re.compile(
    r"field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>\d)"
)
_ARRAY_RE = re.compile(r"^(?P<name>\w+)\s*\[(?P<length>\d*)\]$")
_SYMBOL_RE = re.compile(r"\{\s*(-?\d+),\s*\"([^\"]+)\"\s*\}")


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    signed: bool
    array_length: int | None  # None for scalars

    def c_declaration(self) -> str:
        """A C member with the same size and signedness, whatever the kernel's own type was."""
        if self.array_length is not None:
            element = self.size // self.array_length if self.array_length else 1
            return f"{_int_type(element, self.signed)} {self.name}[{self.array_length}];"
        return f"{_int_type(self.size, self.signed)} {self.name};"


@dataclass(frozen=True)
class TracepointFormat:
    category: str
    event: str
    fields: tuple[Field, ...]
    print_fmt: str

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def struct_name(self) -> str:
        return f"tp_{self.category}_{self.event}"

    def c_struct(self) -> str:
        """A struct laid out at the format file's offsets, with explicit padding."""
        lines = [f"struct {self.struct_name()} {{", "    u64 __common_header;"]
        position = 8
        for index, field in enumerate(sorted(self.fields, key=lambda f: f.offset)):
            if field.offset < position:
                continue  # overlaps the common header or a previous field: never accessed
            if field.offset > position:
                lines.append(f"    u8 __pad{index}[{field.offset - position}];")
            lines.append(f"    {field.c_declaration()}")
            position = field.offset + field.size
        lines.append("} __attribute__((packed));")
        return "\n".join(lines)

    def symbols(self, field_name: str) -> dict[int, str]:
        """Decode the ``__print_symbolic(REC->field, {N, "NAME"}, ...)`` table of one field."""
        marker = f"__print_symbolic(REC->{field_name},"
        start = self.print_fmt.find(marker)
        if start < 0:
            return {}
        depth, end = 0, start
        for end in range(start, len(self.print_fmt)):
            char = self.print_fmt[end]
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    break
        body = self.print_fmt[start:end]
        return {int(number): name for number, name in _SYMBOL_RE.findall(body)}


def _int_type(size: int, signed: bool) -> str:
    bits = {1: 8, 2: 16, 4: 32, 8: 64}.get(size)
    if bits is None:
        return "u8"  # odd sizes only appear inside arrays of bytes
    return f"{'s' if signed else 'u'}{bits}"


def parse_format(category: str, event: str, text: str) -> TracepointFormat:
    """Parse the text of ``events/<category>/<event>/format``; common_* fields are left out."""
    fields = []
    for match in _FIELD_RE.finditer(text):
        declaration = match.group("decl").strip()
        name_part = declaration.split()[-1].lstrip("*")
        array = _ARRAY_RE.match(name_part)
        name = array.group("name") if array else name_part
        if name.startswith("common_"):
            continue
        size = int(match.group("size"))
        length = None
        if array:
            length = int(array.group("length")) if array.group("length") else size
        fields.append(
            Field(
                name=name,
                offset=int(match.group("offset")),
                size=size,
                signed=match.group("signed") == "1",
                array_length=length,
            )
        )
    print_fmt = text.split("print fmt:", 1)[1].strip() if "print fmt:" in text else ""
    return TracepointFormat(category, event, tuple(fields), print_fmt)


class Tracefs:
    """Reads tracepoint formats; the root is injectable so tests can use copied format files."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else find_tracefs()

    def format(self, tracepoint: str) -> TracepointFormat | None:
        """The format of ``category:event``, or None when this kernel lacks the tracepoint."""
        category, event = tracepoint.split(":", 1)
        path = self.root / "events" / category / event / "format"
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return parse_format(category, event, text)


def find_tracefs() -> Path:
    """The first mounted tracefs (preflight.ensure_tracefs mounts one when none is)."""
    candidates = tracefs_candidates()
    for candidate in candidates:
        if (candidate / "events").is_dir():
            return candidate
    return candidates[0]
