"""Struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).

bcc 0.26 has no CO-RE and compiles against headers that need not match the kernel, so a BPF
program that reads a kernel struct gets the member's byte offset from here, as a define, and
reads it with bpf_probe_read_kernel. The file is read once and indexed; a type is decoded
only when a path goes through it.

A path names members of nested structs and unions held by value, e.g.
``offset("net", "ns.inum")``; members of anonymous structs and unions are found as if they
were the parent's own, as C does. A path cannot cross a pointer: read the pointer, then ask
for offsets in the struct it points to.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F
POINTER_SIZE = 8  # BTF gives no pointer size; every architecture this runs on is 64-bit

# BTF_KIND_* (include/uapi/linux/btf.h) and the bytes each kind's record carries after the
# common 12-byte header: fixed, and per vlen entry.
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 8, 9, 10, 11
KIND_TYPE_TAG, KIND_ENUM64 = 18, 19
_EXTRA_BYTES = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8)}
_EXTRA_BYTES |= {14: (4, 0), 15: (0, 12), 17: (4, 0), 19: (0, 12)}
_QUALIFIERS = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}


class BtfError(Exception):
    """No BTF, a malformed blob, or a struct or member this kernel does not have."""


@dataclass(frozen=True)
class Member:
    """Where a member sits in its outermost struct, and how big it is."""

    offset: int  # bytes from the start of the struct that the path began at
    size: int  # bytes; for a bitfield, those of its declared type
    bit_offset: int = 0  # within the byte at ``offset``, for bitfields
    bitfield_size: int = 0  # 0 unless a bitfield


@dataclass(frozen=True)
class _Type:
    kind: int
    name: str
    size_or_type: int  # size for int/struct/union/enum, referenced type id for the others
    members: tuple[tuple[str, int, int, int], ...] = ()  # (name, type id, bit offset, bits)
    array: tuple[int, int] = (0, 0)  # (element type id, element count)


class Btf:
    """The types of one BTF blob, indexed by id and structs/unions by name."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 24:
            raise BtfError("BTF blob is shorter than its header")
        self._order = "<" if struct.unpack_from("<H", blob)[0] == BTF_MAGIC else ">"
        if struct.unpack_from(self._order + "H", blob)[0] != BTF_MAGIC:
            raise BtfError("not BTF (bad magic)")
        header_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            self._order + "5I", blob, 4
        )
        types_start = header_len + type_off
        self._data = blob[types_start : types_start + type_len]
        self._strings = blob[header_len + str_off : header_len + str_off + str_len]
        # Only where each record starts, and struct/union names: a type is decoded when asked
        # for, which keeps a 5 MB vmlinux to a few MB of memory and a fraction of a second.
        self._positions = array("L", [0])  # id 0 is void
        self._by_name: dict[str, int] = {}
        self._index()

    @classmethod
    def load(cls, path: Path = VMLINUX) -> Btf:
        try:
            return cls(path.read_bytes())
        except OSError as error:
            raise BtfError(
                f"kernel BTF is not readable at {path} ({error.strerror}): a kernel built with "
                "CONFIG_DEBUG_INFO_BTF=y is needed"
            ) from error

    def _name_at(self, offset: int) -> str:
        end = self._strings.find(b"\0", offset)
        return self._strings[offset:end].decode(errors="replace")

    def _index(self) -> None:
        header = struct.Struct(self._order + "2I")
        data, position = self._data, 0
        while position + 12 <= len(data):
            name_off, info = header.unpack_from(data, position)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if kind in (KIND_STRUCT, KIND_UNION) and name_off:
                # Forward declarations are FWD records, so the first named struct is the full
                # one; a union and a struct may share a name.
                self._by_name.setdefault(self._name_at(name_off), len(self._positions))
            self._positions.append(position)
            fixed, per_entry = _EXTRA_BYTES.get(kind, (0, 0))
            position += 12 + fixed + per_entry * vlen
        if position != len(data):
            raise BtfError("malformed BTF: type section ends inside a record")

    def _type(self, type_id: int) -> _Type:
        if not 0 < type_id < len(self._positions):
            raise BtfError(f"BTF type id {type_id} does not exist")
        position = self._positions[type_id]
        name_off, info, size_or_type = struct.unpack_from(self._order + "3I", self._data, position)
        kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        name = self._name_at(name_off)
        if kind in (KIND_STRUCT, KIND_UNION):
            members = []
            for i in range(vlen):
                m_name, m_type, m_offset = struct.unpack_from(
                    self._order + "3I", self._data, position + 12 + 12 * i
                )
                bits = m_offset >> 24 if kind_flag else 0
                bit_offset = m_offset & 0xFFFFFF if kind_flag else m_offset
                members.append((self._name_at(m_name), m_type, bit_offset, bits))
            return _Type(kind, name, size_or_type, tuple(members))
        if kind == KIND_ARRAY:
            element, _index, count = struct.unpack_from(
                self._order + "3I", self._data, position + 12
            )
            return _Type(kind, name, 0, array=(element, count))
        return _Type(kind, name, size_or_type)

    def member(self, struct_name: str, path: str) -> Member:
        """The member at ``path`` (dot-separated names) inside ``struct struct_name``."""
        type_id = self._by_name.get(struct_name)
        if type_id is None:
            raise BtfError(f"struct {struct_name} is not in the kernel's BTF")
        offset_bits = 0
        bits = 0
        where = struct_name
        for name in path.split("."):
            container = self._resolve(type_id)
            if container.kind not in (KIND_STRUCT, KIND_UNION):
                raise BtfError(f"{where} is not a struct or union (a pointer cannot be crossed)")
            found = self._find(container, name)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {path}")
            type_id, member_bits, bits = found
            offset_bits += member_bits
            where = f"{where}.{name}"
        return Member(offset_bits // 8, self.size(type_id), offset_bits % 8, bits)

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of a member that is not a bitfield."""
        member = self.member(struct_name, path)
        if member.bitfield_size or member.bit_offset:
            raise BtfError(f"{struct_name}.{path} is a bitfield; use member()")
        return member.offset

    def size(self, type_id: int) -> int:
        resolved = self._resolve(type_id)
        if resolved.kind == KIND_PTR:
            return POINTER_SIZE
        if resolved.kind == KIND_ARRAY:
            element, count = resolved.array
            return self.size(element) * count
        return resolved.size_or_type

    def struct_size(self, struct_name: str) -> int:
        type_id = self._by_name.get(struct_name)
        if type_id is None:
            raise BtfError(f"struct {struct_name} is not in the kernel's BTF")
        return self.size(type_id)

    def _resolve(self, type_id: int) -> _Type:
        """The type behind typedefs and qualifiers."""
        for _ in range(32):
            found = self._type(type_id)
            if found.kind not in _QUALIFIERS:
                return found
            type_id = found.size_or_type
        raise BtfError("BTF typedef chain too long")

    def _find(self, container: _Type, name: str) -> tuple[int, int, int] | None:
        """(type id, bit offset, bitfield bits) of ``name``, looking into anonymous members."""
        for member_name, type_id, bit_offset, bits in container.members:
            if member_name == name:
                return type_id, bit_offset, bits
        for member_name, type_id, bit_offset, _bits in container.members:
            if member_name:
                continue
            inner = self._resolve(type_id)
            if inner.kind in (KIND_STRUCT, KIND_UNION):
                found = self._find(inner, name)
                if found is not None:
                    return found[0], bit_offset + found[1], found[2]
        return None
