"""The collector registry: one declaration per collector, and what is generated from it."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from types import ModuleType

import pytest

from exporter import docs
from exporter.cli import build_parser, collector_switches
from exporter.collectors.base import BpfCollector
from exporter.collectors.registry import (
    apply_attach_points,
    collector_settings,
    collectors_model,
    configurable_collectors,
    enabled_collectors,
    registered_collectors,
    unregister_collector,
    with_collector_switches,
)
from exporter.config import Config, ConfigError, parse_config
from exporter.outputs.otlp import otlp_table
from tests.helpers import REPO

THROWAWAY = REPO / "tests" / "data" / "collectors" / "throwaway.py"
BUILT_IN = [
    "listen_queue",
    "packet_drops",
    "socket_traffic",
    "tcp_connections",
    "udp_sends",
    "udp_unreachable",
    "watch",
]


@pytest.fixture
def throwaway() -> Iterator[ModuleType]:
    """tests/data/collectors/throwaway.py (throwaway and two broken BPF collectors) registered
    for one test."""
    spec = importlib.util.spec_from_file_location("throwaway_collector", THROWAWAY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    otlp_table.cache_clear()
    try:
        yield module
    finally:
        unregister_collector("throwaway")
        unregister_collector("broken_bpf")
        unregister_collector("refused_bpf")
        otlp_table.cache_clear()


def test_every_collector_module_is_registered_in_start_order():
    """Modules are found by listing the package; the watch event log comes last: it reads the
    maps of those before it. (A collector added later needs no change here.)"""
    names = [spec.name for spec in registered_collectors()]
    assert set(BUILT_IN) <= set(names)
    assert names[-1] == "watch" and names[:-1] == sorted(names[:-1])


def test_a_collector_from_elsewhere_gets_its_flag_config_otlp_name_and_docs_rows(throwaway):
    names = [spec.name for spec in configurable_collectors()]
    assert "throwaway" in names
    args = build_parser().parse_args(["--collector.throwaway", "--no-collector.udp_sends"])
    assert collector_switches(args) == {"throwaway": True, "udp_sends": False}
    model = collectors_model()
    settings = model.model_validate({"throwaway": {"answer": 7}}).throwaway
    assert (settings.enabled, settings.answer) == (False, 7)  # off unless asked for
    assert otlp_table()["netsnoop_throwaway_answer"].name == "netsnoop.throwaway.answer"
    rows = docs.collectors_table(registered_collectors())
    assert "| `throwaway` | off | `--[no-]collector.throwaway` | `netsnoop_throwaway_answer` |" in (
        "\n".join(rows)
    )
    assert any(
        row.startswith("| `netsnoop_throwaway_answer` | gauge | `source` |")
        for row in (docs.metrics_table(docs.all_metrics()))
    )
    assert any(
        row.startswith("| `netsnoop.throwaway.answer` | gauge | `1` |")
        for row in (docs.otlp_table(docs.all_metrics()))
    )


def test_the_throwaway_is_gone_after_its_test():
    names = [spec.name for spec in registered_collectors()]
    assert not {"throwaway", "broken_bpf", "refused_bpf"} & set(names)


def test_generated_docs_tables_are_committed():
    """Run ``python -m exporter.docs`` after changing a collector's declaration."""
    for path, text in docs.generated_files().items():
        assert path.read_text(encoding="utf-8") == text, f"{path}: run python -m exporter.docs"


def test_replacing_needs_both_markers():
    with pytest.raises(ValueError, match="markers"):
        docs.replace_between_markers("<!-- x:start -->\n", "x", [])


def test_enabled_collectors_follow_the_config():
    every = [spec.name for spec in registered_collectors() if spec.enabled_by_default]
    assert [c.name for c in enabled_collectors(Config())] == every
    config = parse_config(
        "collectors: {packet_drops: {enabled: false}, listen_queue: {enabled: false}}", "t"
    )
    assert [c.name for c in enabled_collectors(config)] == [
        name for name in every if name not in ("packet_drops", "listen_queue")
    ]


def test_watch_needs_rules_and_an_event_source():
    no_rules = parse_config("watch: []", "t")
    assert "watch" not in [c.name for c in enabled_collectors(no_rules)]
    no_source = with_collector_switches(Config(), {"tcp_connections": False, "udp_sends": False})
    assert "watch" not in [c.name for c in enabled_collectors(no_source)]
    only_udp = with_collector_switches(Config(), {"tcp_connections": False})
    watch = enabled_collectors(only_udp)[-1]
    assert [source.name for source in watch.sources] == ["udp_sends"]  # type: ignore[attr-defined]


def test_flags_win_over_the_file():
    config = parse_config("collectors: {udp_sends: {enabled: false, map_size: 64}}", "t")
    switched = with_collector_switches(config, {"udp_sends": True, "packet_drops": False})
    assert switched.collectors.udp_sends.enabled and switched.collectors.udp_sends.map_size == 64
    assert not switched.collectors.packet_drops.enabled
    assert with_collector_switches(config, {}) is config


def test_a_tracepoint_override_reaches_its_program():
    collectors = enabled_collectors(
        parse_config("tracepoints: {packet_drops.kfree_skb: 'skb:consume_skb'}", "t")
    )
    drops = next(c for c in collectors if c.name == "packet_drops")
    assert isinstance(drops, BpfCollector)
    assert drops.attach_points == {"kfree_skb": "skb:consume_skb"}
    others = [c for c in collectors if isinstance(c, BpfCollector) and c is not drops]
    assert all(not c.attach_points for c in others)


def test_a_tracepoint_override_for_no_program_is_a_config_error():
    collectors = enabled_collectors(Config())
    with pytest.raises(
        ConfigError, match=re.escape("tracepoints.packet_drops.nope: no such program")
    ):
        apply_attach_points(collectors, {"packet_drops.nope": "skb:kfree_skb"})
    off = with_collector_switches(Config(), {"packet_drops": False})
    with pytest.raises(ConfigError, match="no such program in an enabled collector"):
        apply_attach_points(enabled_collectors(off), {"packet_drops.kfree_skb": "skb:x"})


def test_the_bundled_config_is_the_defaults_with_their_descriptions():
    """config/netsnoop.yaml is generated: its values parse back to the defaults."""
    text = (REPO / "config" / "netsnoop.yaml").read_text()
    assert parse_config(text, "bundled") == Config()
    assert "# Distinct {port, comm, uid} counters.\n    map_size: 8192" in text
    summary = "# UDP datagrams sent, by remote port, process and uid."
    assert f"  udp_sends:\n    {summary}\n    enabled: true" in text


def test_collectors_of_one_exporter_share_its_services_and_no_one_elses():
    def listeners(collectors: list) -> list:
        return [c.listeners for c in collectors if c.name in ("tcp_connections", "listen_queue")]

    first, second = listeners(enabled_collectors(Config())), listeners(enabled_collectors(Config()))
    assert first[0] is first[1] and second[0] is second[1]
    assert first[0] is not second[0]


def test_collector_settings_gives_the_section_as_its_declared_model():
    from exporter.collectors.listen_queue import ListenQueueSettings
    from exporter.collectors.udp_sends import UdpSendsSettings

    config = parse_config("collectors: {udp_sends: {map_size: 1024}}", "test")
    section = collector_settings(config, "udp_sends", UdpSendsSettings)
    assert section is config.collectors.udp_sends and section.map_size == 1024
    with pytest.raises(TypeError, match=r"is a UdpSendsSettings, not ListenQueue"):
        collector_settings(config, "udp_sends", ListenQueueSettings)


def test_workloads_no_longer_imports_the_pod_watch():
    import subprocess
    import sys

    code = (
        "import sys, exporter.kubernetes.workloads;"
        " print('exporter.kubernetes.pod_watch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
