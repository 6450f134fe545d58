"""Reading BPF counter maps as increments, and draining them without losing one.

A BPF program adds to a counter through a pointer it got from a lookup; deleting the key while
programs still add to it loses those additions (or lands them in a reused element). So the
keys carry an epoch (``current_epoch()`` in bpf/common.h, read from the ``counter_epoch``
array on each event). Every ROTATE_S this reader bumps the epoch; the old epoch's keys then
stop changing as soon as the programs that read the old epoch finish. Those run at a
tracepoint with preemption disabled and take microseconds, so RETIRE_S after the bump the
next read sees the old keys' final values, and only then deletes them.

The exporter drains every counter map on a timer of its own (exporter/runtime.py), not only
when a scrape or an OTLP push comes, so a map's capacity bounds what arrives in one drain
interval, never what arrives between two scrapes. Drained increments wait here for the next
read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from exporter.kernel.maps import BpfMap

ROTATE_S = 5.0  # how often new increments move to a new epoch
RETIRE_S = 1.0  # how long after that the old epoch's keys are certainly final


class EpochClock:
    """The ``counter_epoch`` of one BPF module, shared by every counters map in it: each map's
    drain may move the epoch on. A drain holds ``lock`` from reading the epoch to deleting the
    final keys, so no other map's drain moves the epoch meanwhile (it would turn the live
    keys into "old" ones)."""

    def __init__(self, epoch_table: BpfMap, clock: Callable[[], float] = time.monotonic) -> None:
        self._epoch_table = epoch_table
        self._clock = clock
        self.lock = threading.Lock()
        self.epoch = 0
        self.rotated_at = clock()

    def now(self) -> float:
        return self._clock()

    def old_keys_final(self, now: float) -> bool:
        """Keys of an epoch before the current one no longer change."""
        return now - self.rotated_at >= RETIRE_S

    def rotate_if_due(self, now: float) -> None:
        """Called with ``lock`` held."""
        if now - self.rotated_at >= ROTATE_S:
            self.epoch = (self.epoch + 1) & 0xFFFFFFFF
            self._epoch_table.set_at(0, self.epoch)
            self.rotated_at = now


class EpochCounters:
    """A BPF hash of u64 counters keyed by a struct with an ``epoch`` field, read as the
    increments since the previous read. drain() (the timer) and read() (a snapshot) may run
    in different threads."""

    def __init__(self, counters: BpfMap, epochs: EpochClock) -> None:
        self._counters = counters
        self._epochs = epochs
        offset, size = counters.key_field("epoch")
        self._epoch_at = slice(offset, offset + size)  # the epoch's bytes in a key
        self._seen: dict[bytes, int] = {}  # value at the last read, per key still in the map
        self._drained: dict[bytes, tuple[Any, int]] = {}  # increments not yet read
        self._lock = threading.Lock()
        self.entries = 0

    def read(self) -> list[tuple[Any, int]]:
        """(key, increment) for every key that grew since the previous read."""
        with self._lock:
            self._drain()
            increments = list(self._drained.values())
            self._drained = {}
        return increments

    def drain(self) -> None:
        """Moves what the kernel counted into userspace, and frees the retired keys."""
        with self._lock:
            self._drain()

    def _drain(self) -> None:
        with self._epochs.lock:
            increments = self._kernel_increments()
        for identity, grown in increments:
            key, pending = self._drained.get(identity, (None, 0))
            if key is None:
                key = self._counters.key_from(identity)
            self._drained[identity] = (key, pending + grown)

    def _kernel_increments(self) -> list[tuple[bytes, int]]:
        """(key bytes, growth) of the keys that grew; deletes the final ones (old epoch)."""
        now = self._epochs.now()
        epoch_at = self._epoch_at
        current = self._epochs.epoch.to_bytes(epoch_at.stop - epoch_at.start, "little")
        old_keys_final = self._epochs.old_keys_final(now)
        increments: list[tuple[bytes, int]] = []
        seen: dict[bytes, int] = {}
        final: list[bytes] = []
        previous = self._seen
        items = self._counters.counter_items()
        for identity, count in items:
            grown = count - previous.get(identity, 0)
            if grown > 0:
                increments.append((identity, grown))
            if old_keys_final and identity[epoch_at] != current:
                final.append(identity)
            else:
                seen[identity] = count
        self._counters.delete_keys(final)
        self._seen = seen
        self.entries = len(items) - len(final)
        self._epochs.rotate_if_due(now)
        return increments
