"""BPF maps as collectors use them: keys and values built from their fields, batch reads,
deletes that say whether this side won, per-CPU sums. bcc's table objects stay behind this
class, so the loader could change without touching the collectors."""

from __future__ import annotations

import ctypes
import errno
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

BATCH_ENTRIES = 4096  # entries per batch read: the buffers stay small whatever the capacity


def libbcc() -> Any:
    """bcc's C library (bpf syscalls), imported when first used: bcc is heavy."""
    from bcc.libbcc import lib  # type: ignore[import-untyped]

    return lib


class BpfMap:
    """One map of a loaded program (BpfProgram.table)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    @property
    def max_entries(self) -> int:
        return int(self._table.max_entries)

    def key(self, *fields: Any) -> Any:
        """A key of the map's C type, from its fields in order (a struct, or an integer)."""
        return self._table.Key(*fields)

    def value(self, *fields: Any) -> Any:
        return self._table.Leaf(*fields)

    def items(self) -> list[tuple[Any, Any]]:
        """Every (key, value), read in batches (map_items)."""
        return map_items(self._table)

    def counter_items(self) -> list[tuple[bytes, int]]:
        """Every (key bytes, value) of a map of u64 counters, in batches: no ctypes object is
        made per entry (three per entry were most of a 10k-entry drain)."""
        return counter_items(self._table)

    def key_from(self, raw: bytes) -> Any:
        """The key struct whose bytes ``raw`` are (from counter_items)."""
        return self._table.Key.from_buffer_copy(raw)

    def key_field(self, name: str) -> tuple[int, int]:
        """(offset, size) of a field of the key struct."""
        field = getattr(self._table.Key, name)
        return field.offset, field.size

    def delete_keys(self, raw_keys: list[bytes]) -> None:
        """Deletes the entries of these key bytes, in one batch syscall; the keys must exist
        (only userspace deletes them, as for counters)."""
        if not raw_keys:
            return
        lib = libbcc()
        keys = (self._table.Key * len(raw_keys)).from_buffer_copy(b"".join(raw_keys))
        count = ctypes.c_uint32(len(raw_keys))
        if lib.bpf_delete_batch(self._table.map_fd, ctypes.byref(keys), ctypes.byref(count)):
            error = ctypes.get_errno()
            raise OSError(error, f"BPF_MAP_DELETE_BATCH: {os.strerror(error)}")

    def get(self, key: Any) -> Any | None:
        return self._table.get(key)

    def put(self, key: Any, value: Any) -> None:
        self._table[key] = value

    def delete(self, key: Any) -> bool:
        """False when the entry was gone already (the BPF side deleted it first)."""
        try:
            del self._table[key]
        except KeyError:
            return False
        return True

    def set_at(self, index: int, value: int) -> None:
        """An array's element ``index``."""
        self._table[self._table.Key(index)] = self._table.Leaf(value)

    def per_cpu_sum(self, index: int) -> int:
        """A per-CPU array's element ``index``, summed over the CPUs."""
        return int(sum(self._table[self._table.Key(index)]))

    def fill(self, values: bytes) -> None:
        """Writes an array of u8, one value per index, in one batch syscall."""
        keys = (self._table.Key * len(values))(*range(len(values)))
        leaves = (self._table.Leaf * len(values)).from_buffer_copy(values)
        self._table.items_update_batch(keys, leaves)


class ClaimableMap(Protocol):
    """What claim_stale_entries needs of a map (BpfMap, or a test's stand-in)."""

    def items(self) -> list[tuple[Any, Any]]: ...

    def delete(self, key: Any) -> bool: ...


def lookup_batches(table: Any, leaf: Any, batch: int) -> Iterator[tuple[Any, Any, int]]:
    """The batches of BPF_MAP_LOOKUP_BATCH over a bcc hash table: its key and ``leaf`` buffers
    (reused: copy what you keep) and how many entries they hold now."""
    lib = libbcc()
    size = min(batch, table.max_entries)
    keys, values = (table.Key * size)(), (leaf * size)()
    position, count = ctypes.c_uint32(0), ctypes.c_uint32(0)
    first = True
    while True:
        count.value = size
        result = lib.bpf_lookup_batch(
            table.map_fd,
            None if first else ctypes.byref(position),
            ctypes.byref(position),
            ctypes.byref(keys),
            ctypes.byref(values),
            ctypes.byref(count),
        )
        error = ctypes.get_errno()
        yield keys, values, count.value
        if result != 0:
            if error == errno.ENOENT:  # the end of the map
                return
            raise OSError(error, f"BPF_MAP_LOOKUP_BATCH: {os.strerror(error)}")
        first = False


def map_items(table: Any, batch: int = BATCH_ENTRIES) -> list[tuple[Any, Any]]:
    """Every (key, value) of a bcc hash table, read ``batch`` entries at a time. bcc's
    items_lookup_batch allocates and zeroes buffers for the map's whole capacity on every call:
    megabytes a second for the 65,536-entry maps drained every second."""
    items: list[tuple[Any, Any]] = []
    for keys, values, count in lookup_batches(table, table.Leaf, batch):
        items.extend((_detached(keys[i]), _detached(values[i])) for i in range(count))
    return items


def counter_items(table: Any, batch: int = BATCH_ENTRIES) -> list[tuple[bytes, int]]:
    """map_items for u64 values, with each key as its bytes."""
    key_size = ctypes.sizeof(table.Key)
    items: list[tuple[bytes, int]] = []
    for keys, values, count in lookup_batches(table, ctypes.c_uint64, batch):
        raw = ctypes.string_at(keys, count * key_size)
        starts = range(0, len(raw), key_size)
        items.extend(zip([raw[at : at + key_size] for at in starts], values[:count], strict=True))
    return items


def _detached(value: Any) -> Any:
    """A copy of a struct or array element, which would otherwise share the reused buffer."""
    if isinstance(value, ctypes.Structure | ctypes.Union | ctypes.Array):
        return type(value).from_buffer_copy(value)
    return value


def claim_closed_entries(
    table: ClaimableMap,
    older_than_s: float,
    now_ns: Callable[[], int] = time.monotonic_ns,
) -> Iterator[Any]:
    """Deletes and yields the values whose ``closed_ns`` (bpf_ktime_get_ns, CLOCK_MONOTONIC)
    is older than ``older_than_s``. An entry the BPF side deleted first (its errno arrived
    meanwhile) is skipped, so each is handled by exactly one side."""
    return claim_stale_entries(table, "closed_ns", older_than_s, now_ns)


def claim_stale_entries(
    table: ClaimableMap,
    stamp: str,
    older_than_s: float,
    now_ns: Callable[[], int] = time.monotonic_ns,
) -> Iterator[Any]:
    """Deletes and yields the values whose ``stamp`` field (bpf_ktime_get_ns) is older than
    ``older_than_s``; one batch read, so a map of tens of thousands costs milliseconds.
    ``now_ns`` is the kernel's clock, injectable for tests."""
    now = now_ns()
    for key, value in table.items():
        if now - getattr(value, stamp) >= older_than_s * 1e9 and table.delete(key):
            yield value
