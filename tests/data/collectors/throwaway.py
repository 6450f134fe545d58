"""A collector declared outside exporter/collectors/, to prove the registry's promise: its one
declaration gives it a config key, a flag, an OTLP name, scrape metrics and a docs row. Beside
it, a BPF collector whose source does not compile and one whose handler the verifier refuses,
to prove that each disables only itself although all collectors compile as one module.

Run as a script, it registers itself and then runs the exporter's command line, so an end-to-end
test starts the real exporter with it: ``python throwaway.py --collector.throwaway ...``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from exporter.collectors.base import BpfCollector, Collector
from exporter.collectors.registry import CollectorSpec, collector_settings, register_collector
from exporter.core.metrics import MetricSpec, OtlpMetric
from exporter.core.snapshot import MetricFamily
from exporter.kernel.programs import ProgramSpec
from exporter.settings import StrictModel

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.services import SharedServices


class ThrowawaySettings(StrictModel):
    answer: int = Field(42, ge=0, description="What the gauge reads.")


ANSWER = MetricSpec(
    "netsnoop_throwaway_answer",
    "gauge",
    "The configured answer, read at each scrape.",
    ("source",),
    OtlpMetric("netsnoop.throwaway.answer", "1"),
)


class ThrowawayCollector(Collector):
    name: ClassVar[str] = "throwaway"

    def __init__(self, config: Config, services: SharedServices) -> None:
        self.answer = collector_settings(config, self.name, ThrowawaySettings).answer

    def start(self) -> None:
        pass

    def collect(self) -> Iterable[MetricFamily]:
        family = ANSWER.family()
        family.set(("config",), self.answer)
        return [family]


SPEC = register_collector(
    CollectorSpec(
        name="throwaway",
        summary="A test collector: reads its configured answer.",
        settings=ThrowawaySettings,
        enabled_by_default=False,
        factory=ThrowawayCollector,
        metrics=(ANSWER,),
    )
)


class BrokenBpfSettings(StrictModel):
    """Nothing to set: the section exists so that the flag does."""


class BrokenBpfCollector(BpfCollector):
    name: ClassVar[str] = "broken_bpf"
    source_file: ClassVar[str] = str(Path(__file__).with_name("broken_bpf.c"))  # absolute
    programs: ClassVar[tuple[ProgramSpec, ...]] = (ProgramSpec("sock:inet_sock_set_state"),)
    map_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Config, services: SharedServices) -> None:
        super().__init__()

    def collect(self) -> Iterable[MetricFamily]:
        return []


class RefusedBpfCollector(BrokenBpfCollector):
    """Its source compiles, but the kernel's verifier refuses the handler."""

    name: ClassVar[str] = "refused_bpf"
    source_file: ClassVar[str] = str(Path(__file__).with_name("refused_bpf.c"))


for collector, summary in (
    (BrokenBpfCollector, "A test collector whose BPF source does not compile."),
    (RefusedBpfCollector, "A test collector whose BPF handler the verifier refuses."),
):
    register_collector(
        CollectorSpec(
            name=collector.name,
            summary=summary,
            settings=BrokenBpfSettings,
            enabled_by_default=False,
            factory=collector,
            metrics=(),
        )
    )

if __name__ == "__main__":
    from exporter.cli import main

    sys.exit(main(sys.argv[1:]))
