"""A collector declared outside exporter/collectors/, to prove the registry's promise: its one
declaration gives it a config key, a flag, an OTLP name, scrape metrics and a docs row.

Run as a script, it registers itself and then runs the exporter's command line, so an end-to-end
test starts the real exporter with it: ``python throwaway.py --collector.throwaway ...``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from exporter.collectors.base import Collector
from exporter.collectors.registry import CollectorSpec, collector_settings, register_collector
from exporter.core.metrics import MetricSpec, OtlpMetric
from exporter.core.snapshot import MetricFamily
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

if __name__ == "__main__":
    from exporter.cli import main

    sys.exit(main(sys.argv[1:]))
