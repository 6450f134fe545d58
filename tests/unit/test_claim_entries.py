"""claim_closed_entries / claim_stale_entries: the userspace half of entries both sides may
delete; each entry is handled by exactly one side."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.kernel.maps import claim_closed_entries, claim_stale_entries

SECOND_NS = 1_000_000_000


@dataclass
class Attempt:
    port: int
    closed_ns: int


class PendingMap(dict):
    """A BPF hash of pending attempts (BpfMap's items and delete); ``deleted_by_bpf`` are gone
    by the time userspace deletes them (the errno arrived between the read and the delete)."""

    def __init__(self, entries: dict[int, Attempt], deleted_by_bpf: frozenset[int] = frozenset()):
        super().__init__(entries)
        self.deleted_by_bpf = deleted_by_bpf

    def items(self) -> list[tuple[int, Attempt]]:  # type: ignore[override]
        return list(super().items())

    def delete(self, key: int) -> bool:
        del self[key]
        return key not in self.deleted_by_bpf


def test_old_entries_are_claimed_once_and_young_ones_stay():
    table = PendingMap({1: Attempt(80, 0), 2: Attempt(443, 9 * SECOND_NS)})
    claimed = list(claim_closed_entries(table, 5.0, lambda: 10 * SECOND_NS))
    assert [a.port for a in claimed] == [80]
    assert list(table) == [2]
    assert list(claim_closed_entries(table, 5.0, lambda: 10 * SECOND_NS)) == []


def test_an_entry_the_bpf_side_deleted_first_is_not_claimed_again():
    table = PendingMap({1: Attempt(80, 0), 2: Attempt(81, 0)}, deleted_by_bpf=frozenset({1}))
    claimed = list(claim_closed_entries(table, 1.0, lambda: 10 * SECOND_NS))
    assert [a.port for a in claimed] == [81]
    assert not table


def test_any_stamp_field_can_age_an_entry():
    @dataclass
    class Connecting:
        started_ns: int

    table = PendingMap({7: Connecting(0), 8: Connecting(700 * SECOND_NS)})  # type: ignore[dict-item]
    now = lambda: 700 * SECOND_NS  # noqa: E731
    claimed = list(claim_stale_entries(table, "started_ns", 600.0, now))
    assert claimed == [Connecting(0)] and list(table) == [8]
