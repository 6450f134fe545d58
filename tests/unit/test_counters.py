"""EpochCounters: a drained map loses no increment, whichever thread drains it."""

from __future__ import annotations

import ctypes

from exporter.kernel import counters
from exporter.kernel.counters import EpochClock, EpochCounters


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

    def counter_items(self) -> list[tuple[bytes, int]]:
        return [(identity, value) for identity, (_, value) in self.values.items()]

    def key_from(self, raw: bytes) -> Key:
        return Key.from_buffer_copy(raw)

    def key_field(self, name: str) -> tuple[int, int]:
        field = getattr(Key, name)
        return field.offset, field.size

    def delete_keys(self, raw_keys: list[bytes]) -> None:
        for raw in raw_keys:
            del self.values[raw]


class EpochTable(dict):
    """Stands in for the counter_epoch array."""

    def set_at(self, index: int, value: int) -> None:
        self[index] = value


def test_drained_increments_wait_for_the_next_read_and_retired_keys_are_freed():
    now = [0.0]
    kernel, epoch = FakeCounterMap(), EpochTable()
    reader = EpochCounters(kernel, EpochClock(epoch, clock=lambda: now[0]))
    kernel.add(80, 0, 3)
    reader.drain()
    kernel.add(80, 0, 2)
    now[0] = counters.ROTATE_S  # this drain moves the programs to epoch 1
    reader.drain()
    assert epoch[0] == 1
    kernel.add(80, 1)
    now[0] += counters.RETIRE_S  # epoch 0 is final: read a last time and deleted
    reader.drain()
    assert list(kernel.values) == [bytes(Key(80, 0, 1))]
    assert sum(count for _, count in reader.read()) == 6
    assert reader.read() == []  # each increment is handed out once


def reader_at(now: list[float]) -> tuple[FakeCounterMap, EpochTable, EpochCounters]:
    kernel, epoch = FakeCounterMap(), EpochTable()
    reader = EpochCounters(kernel, EpochClock(epoch, clock=lambda: now[0]))
    return kernel, epoch, reader


def test_an_old_epoch_key_stays_until_it_is_final_so_late_additions_count():
    """Programs that read the old epoch just before the bump still add to its keys: those
    keys are read again and only deleted RETIRE_S after the bump."""
    now = [0.0]
    kernel, epoch, reader = reader_at(now)
    kernel.add(443, 0, 4)
    now[0] = counters.ROTATE_S
    reader.drain()  # rotates: new events go to epoch 1
    assert epoch[0] == 1
    kernel.add(443, 0, 1)  # a program that read epoch 0 before the bump
    now[0] += counters.RETIRE_S / 2
    reader.drain()
    assert bytes(Key(443, 0, 0)) in kernel.values  # not final yet: kept
    kernel.add(443, 0, 2)
    now[0] += counters.RETIRE_S
    reader.drain()
    assert not kernel.values  # final: read once more, then deleted
    assert reader.entries == 0
    assert [(k.port, n) for k, n in reader.read()] == [(443, 7)]


def test_read_drains_by_itself_and_sums_increments_of_one_key():
    now = [0.0]
    kernel, _, reader = reader_at(now)
    kernel.add(22, 0, 2)
    reader.drain()
    kernel.add(22, 0, 3)
    kernel.add(23, 0, 1)
    assert sorted((k.port, n) for k, n in reader.read()) == [(22, 5), (23, 1)]
    assert reader.entries == 2  # both keys are still counting in the current epoch


def test_the_epoch_wraps_at_32_bits():
    now = [0.0]
    _, epoch, reader = reader_at(now)
    reader._epochs.epoch = 0xFFFFFFFF
    now[0] = counters.ROTATE_S
    reader.drain()
    assert epoch[0] == 0


def test_maps_of_one_module_share_the_epoch_and_keep_each_others_live_keys():
    """Two counter maps, one epoch: when the first map's drain moves the epoch on, the
    second map's keys of the new epoch are live and stay; its old ones go once final."""
    now = [0.0]
    epoch = EpochTable()
    clock = EpochClock(epoch, clock=lambda: now[0])
    first, second = FakeCounterMap(), FakeCounterMap()
    first_reader, second_reader = EpochCounters(first, clock), EpochCounters(second, clock)
    second.add(53, 0, 2)
    now[0] = counters.ROTATE_S + counters.RETIRE_S
    first_reader.drain()  # rotates the module's epoch to 1
    assert epoch[0] == 1
    second.add(53, 1, 5)  # the programs now write epoch 1
    second_reader.drain()  # epoch 0 became old just now: not final yet
    assert {bytes(Key(53, 0, 0)), bytes(Key(53, 0, 1))} <= set(second.values)
    second.add(53, 0, 1)  # a late addition to the old key still counts
    now[0] += counters.RETIRE_S
    second_reader.drain()
    assert set(second.values) == {bytes(Key(53, 0, 1))}  # the live key stays
    assert sum(n for _, n in second_reader.read()) == 8


def test_drains_from_another_thread_lose_nothing():
    """The drain timer and a snapshot read run at once: every increment is read exactly once."""
    import threading

    now = [0.0]
    kernel, _, reader = reader_at(now)
    lock = threading.Lock()
    kernel_items = kernel.counter_items

    def items() -> list:
        with lock:
            return kernel_items()

    kernel.counter_items = items  # type: ignore[method-assign]
    stop = threading.Event()

    def drain_loop() -> None:
        while not stop.is_set():
            reader.drain()

    drainer = threading.Thread(target=drain_loop)
    drainer.start()
    total = 0
    try:
        for _ in range(2000):
            with lock:
                kernel.add(80, 0)
            total += sum(n for _, n in reader.read())
    finally:
        stop.set()
        drainer.join()
    total += sum(n for _, n in reader.read())
    assert total == 2000
