from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from exporter import runtime
from exporter.collectors.base import Collector
from exporter.config import Config, PortsConfig
from exporter.core.cardinality import PortPolicy
from exporter.core.snapshot import MetricFamily
from exporter.kernel.bpf import BpfLoadError
from exporter.runtime import Exporter


class FakeCollector(Collector):
    """Stands in for a BPF collector: programs attach or fail as told."""

    name = "fake"

    def __init__(self, attached: dict[str, bool], fails: bool = False) -> None:
        self.attached = attached
        self.fails = fails

    def start(self) -> None:
        if self.fails:
            raise BpfLoadError("fake.c: does not compile")

    def collect(self) -> Iterable[MetricFamily]:
        return []

    def program_status(self) -> Mapping[str, bool]:
        return self.attached


def test_ready_when_some_program_is_attached():
    exporter = Exporter(Config(), [FakeCollector({"a": False, "b": True})])
    exporter.start()
    assert exporter.ready.is_set()


def test_not_ready_when_nothing_could_attach():
    exporter = Exporter(Config(), [FakeCollector({"a": False}, fails=True)])
    exporter.start()
    assert not exporter.ready.is_set()
    attached = next(f for f in exporter.read() if f.name == "netsnoop_bpf_program_attached")
    assert attached.samples == {("fake", "a"): 0.0}


def test_ready_without_bpf_collectors():
    exporter = Exporter(Config(), [FakeCollector({})])
    exporter.start()
    assert exporter.ready.is_set()


class OtherCollector(FakeCollector):
    name = "other"


def test_a_program_of_two_collectors_gives_two_attached_series():
    """sock:sock_send_length feeds two collectors: one series each, neither overwritten."""
    exporter = Exporter(
        Config(),
        [FakeCollector({"sock_send_length": True}), OtherCollector({"sock_send_length": False})],
    )
    exporter.start()
    attached = next(f for f in exporter.read() if f.name == "netsnoop_bpf_program_attached")
    assert attached.samples == {
        ("fake", "sock_send_length"): 1.0,
        ("other", "sock_send_length"): 0.0,
    }


class DrainedCollector(FakeCollector):
    """Records what the exporter asks of it besides reads."""

    def __init__(self) -> None:
        super().__init__({"a": True})
        self.drained = threading.Event()
        self.policies: list[PortPolicy] = []

    def drain(self) -> None:
        self.drained.set()

    def apply_port_policy(self, policy: PortPolicy) -> None:
        self.policies.append(policy)


def test_kernel_maps_are_drained_on_a_timer_without_any_read(monkeypatch):
    monkeypatch.setattr(runtime, "DRAIN_INTERVAL_S", 0.01)
    collector = DrainedCollector()
    exporter = Exporter(Config(), [collector])
    exporter.start()
    try:
        assert collector.drained.wait(5)  # nobody read a snapshot
    finally:
        exporter.close()


def test_the_port_policy_reaches_the_kernel_at_start_and_on_reload():
    collector = DrainedCollector()
    exporter = Exporter(Config(), [collector])
    exporter.start()
    try:
        exporter.reload(Config(ports=PortsConfig(keep=[2323])))
    finally:
        exporter.close()
    assert len(collector.policies) == 2
    assert collector.policies[1].kernel_flags()[2323] == 0  # kept: never folded
    assert collector.policies[0].kernel_flags()[2323] != 0
