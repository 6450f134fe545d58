"""EpochCounters: a drained map loses no increment, whichever thread drains it."""

from __future__ import annotations

import ctypes

from exporter.kernel import counters
from exporter.kernel.counters import EpochCounters


class Key(ctypes.Structure):
    _fields_ = [
        ("port", ctypes.c_uint16),
        ("reserved", ctypes.c_uint16),
        ("epoch", ctypes.c_uint32),
    ]


class FakeCounterMap:
    """Stands in for a BPF hash: what a BPF program would have counted, by key bytes."""

    def __init__(self) -> None:
        self.values: dict[bytes, tuple[Key, int]] = {}

    def add(self, port: int, epoch: int, count: int = 1) -> None:
        key = Key(port, 0, epoch)
        _, value = self.values.get(bytes(key), (key, 0))
        self.values[bytes(key)] = (key, value + count)

    def items(self):
        return list(self.values.values())

    def __delitem__(self, key: Key) -> None:
        del self.values[bytes(key)]


class EpochTable(dict):
    Key = int
    Leaf = int


def test_drained_increments_wait_for_the_next_read_and_retired_keys_are_freed():
    now = [0.0]
    kernel, epoch = FakeCounterMap(), EpochTable()
    reader = EpochCounters(kernel, epoch, clock=lambda: now[0], read_map=FakeCounterMap.items)
    kernel.add(80, 0, 3)
    reader.drain()
    kernel.add(80, 0, 2)
    now[0] = counters.ROTATE_S  # this drain moves the programs to epoch 1
    reader.drain()
    assert epoch[0] == 1
    kernel.add(80, 1)
    now[0] += counters.RETIRE_S  # epoch 0 is final: read a last time and deleted
    reader.drain()
    assert [bytes(k) for k, _ in kernel.items()] == [bytes(Key(80, 0, 1))]
    assert sum(count for _, count in reader.read()) == 6
    assert reader.read() == []  # each increment is handed out once
