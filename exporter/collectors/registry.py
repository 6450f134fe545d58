"""The collector registry, in the manner of node_exporter's ``registerCollector``.

Each collector module declares itself once, at import::

    register_collector(CollectorSpec(
        name="udp_unreachable",
        summary="ICMP port-unreachable replies to UDP datagrams, by closed port.",
        settings=UdpUnreachableSettings,     # its keys under collectors.udp_unreachable
        factory=UdpUnreachableCollector,     # called with the Config and SharedServices
        metrics=(UNREACHABLE,),              # MetricSpecs (exporter/core/metrics.py)
    ))

From these declarations come the ``collectors:`` section of the config (with its ``enabled``
key), the ``--[no-]collector.<name>`` flags, the OTLP names, the per-collector scrape metrics and
the generated docs tables (exporter/docs.py). Every module of this package but ``base`` and
``registry`` is a collector and is imported on first use, so adding one is adding its file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field, create_model

from exporter.core.metrics import MetricSpec
from exporter.settings import ConfigError, StrictModel

if TYPE_CHECKING:
    from exporter.collectors.base import Collector
    from exporter.config import Config
    from exporter.services import SharedServices

NOT_COLLECTORS = frozenset({"base", "registry"})


class NoSettings(StrictModel):
    """For a collector without settings of its own: it has only ``enabled``."""


@dataclass(frozen=True)
class CollectorSpec:
    """One collector, declared once. ``settings=None`` means it has no ``collectors:`` key
    and no flag: ``wanted`` alone decides (the watch event log follows the ``watch:`` rules).
    ``order`` places it among the others (lower first, then by name); a collector that reads
    others' maps comes after them."""

    name: str
    summary: str
    factory: Callable[[Config, SharedServices], Collector]
    metrics: tuple[MetricSpec, ...]
    settings: type[StrictModel] | None = NoSettings
    enabled_by_default: bool = True
    wanted: Callable[[Config], bool] | None = None
    order: int = 0

    def enabled(self, config: Config) -> bool:
        if self.wanted is not None:
            return self.wanted(config)
        return bool(getattr(config.collectors, self.name).enabled)


_registry: dict[str, CollectorSpec] = {}
_discovered = False


def register_collector(spec: CollectorSpec) -> CollectorSpec:
    """Adds a collector; a second one with the same name is a programming error."""
    if spec.name in _registry and _registry[spec.name] is not spec:
        raise ValueError(f"collector {spec.name} registered twice")
    _registry[spec.name] = spec
    return spec


def unregister_collector(name: str) -> None:
    """For tests that register a throwaway collector."""
    _registry.pop(name, None)


def registered_collectors() -> list[CollectorSpec]:
    """Every declared collector, built-in and registered from elsewhere, in start order."""
    global _discovered
    if not _discovered:
        import exporter.collectors as package

        for module in pkgutil.iter_modules(package.__path__):
            if module.name not in NOT_COLLECTORS:
                importlib.import_module(f"{package.__name__}.{module.name}")
        _discovered = True
    return sorted(_registry.values(), key=lambda spec: (spec.order, spec.name))


def configurable_collectors() -> list[CollectorSpec]:
    """The collectors with a ``collectors.<name>`` key and a ``--[no-]collector.<name>`` flag."""
    return [spec for spec in registered_collectors() if spec.settings is not None]


def settings_model(spec: CollectorSpec) -> type[StrictModel]:
    """The declared settings plus ``enabled``, defaulting to ``enabled_by_default``."""
    assert spec.settings is not None
    return create_model(
        spec.settings.__name__,
        __base__=spec.settings,
        __doc__=spec.settings.__doc__,
        enabled=(bool, Field(spec.enabled_by_default, description=spec.summary)),
    )


def collectors_model() -> type[StrictModel]:
    """The ``collectors:`` section: one key per configurable collector."""
    fields: dict[str, Any] = {}
    for spec in configurable_collectors():
        model = settings_model(spec)
        fields[spec.name] = (model, model())
    return create_model("CollectorsConfig", __base__=StrictModel, **fields)


SettingsT = TypeVar("SettingsT", bound=StrictModel)


def collector_settings(config: Config, name: str, settings: type[SettingsT]) -> SettingsT:
    """``config.collectors.<name>``, typed as the settings model the collector declared (its
    class is built from that model at run time, so a type checker cannot see the attribute)."""
    section = getattr(config.collectors, name)
    if not isinstance(section, settings):
        raise TypeError(f"collectors.{name} is a {type(section).__name__}, not {settings.__name__}")
    return section


def with_collector_switches(config: Config, switches: dict[str, bool]) -> Config:
    """The config with ``--[no-]collector.<name>`` applied over the file's ``enabled``."""
    if not switches:
        return config
    update = {
        name: getattr(config.collectors, name).model_copy(update={"enabled": enabled})
        for name, enabled in switches.items()
    }
    collectors = config.collectors.model_copy(update=update)
    return config.model_copy(update={"collectors": collectors})


def enabled_collectors(config: Config, services: SharedServices | None = None) -> list[Collector]:
    """The collectors the configuration turns on, in start order, sharing ``services``; each
    is given the others (``Collector.wire``) and one that finds nothing to work with is left
    out."""
    if services is None:
        from exporter.services import SharedServices

        services = SharedServices(config)
    collectors = [
        spec.factory(config, services) for spec in registered_collectors() if spec.enabled(config)
    ]
    collectors = [c for c in collectors if c.wire(collectors)]
    apply_attach_points(collectors, config.tracepoints)
    return collectors


def apply_attach_points(collectors: Sequence[Collector], tracepoints: dict[str, str]) -> None:
    """Hands each ``<collector>.<program>: category:event`` of the config to its collector;
    a name that matches no program of an enabled collector is a config error."""
    from exporter.collectors.base import BpfCollector

    programs = {
        f"{collector.name}.{spec.name}": collector
        for collector in collectors
        if isinstance(collector, BpfCollector)
        for spec in collector.programs
    }
    for key, tracepoint in tracepoints.items():
        if key not in programs:
            raise ConfigError(f"tracepoints.{key}: no such program in an enabled collector")
        programs[key].attach_points[key.split(".", 1)[1]] = tracepoint
