"""How the collectors' BPF sources become one module: sections, shared headers once, one
dispatcher per tracepoint (exporter/kernel/bpf.py plan_module), on format files copied from
this project's 6.18 kernel and sources injected here."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.kernel.programs import BpfLoadError, BpfPart, ProgramSpec, plan_module
from exporter.kernel.tracefs import Tracefs

TRACEFS_618 = Tracefs(Path(__file__).parents[1] / "data" / "tracefs-6.18")
STATE = ProgramSpec("sock:inet_sock_set_state", ("skaddr", "oldstate", "newstate"))
OWNER_STATE = ProgramSpec("sock:inet_sock_set_state", ("skaddr",), source="owners.h")
RESET = ProgramSpec("tcp:tcp_receive_reset", ("skaddr",))
SOURCES = {"common.h": "/* common */", "owners.h": "/* owners */"}


def part(name: str, *programs: ProgramSpec, **fields) -> BpfPart:
    values = {
        "source_file": f"{name}.c",
        "map_names": (),
        "defines": {},
        "module_defines": {"NO_UID": "0xffffffffU"},
        **fields,
    }
    return BpfPart(name, programs=programs, **values)


def plan(*parts: BpfPart, formats=None):
    points = {spec.attach_to for p in parts for spec in p.programs}
    found = formats if formats is not None else {p: TRACEFS_618.format(p) for p in points}
    return plan_module(parts, found, lambda name: SOURCES.get(name, f"/* {name} */"))


def test_one_program_per_tracepoint_calls_every_collectors_handler_and_a_shared_one_once():
    planned = plan(
        part("retransmits", OWNER_STATE, shared_sources=("owners.h",)),
        part("resets", OWNER_STATE, RESET, shared_sources=("owners.h",)),
        part("connections", STATE, RESET),
    )
    by_point = {d.attach_to: d for d in planned.dispatchers}
    assert by_point["sock:inet_sock_set_state"].handlers == (
        "owners__on_inet_sock_set_state",  # the shared header's handler first, once
        "connections__on_inet_sock_set_state",
    )
    assert by_point["tcp:tcp_receive_reset"].handlers == (
        "resets__on_tcp_receive_reset",
        "connections__on_tcp_receive_reset",
    )
    assert by_point["sock:inet_sock_set_state"].parts == ("retransmits", "resets", "connections")
    assert planned.source.count("/* owners */") == 1
    assert "int on_inet_sock_set_state(void *args)" in planned.source
    assert "    connections__on_tcp_receive_reset(args);" in planned.source


def test_each_section_sees_its_own_values_and_markers_and_loses_them_after():
    planned = plan(
        part("first", RESET, defines={"PENDING_MAP_SIZE": 10}),
        part("second", STATE, defines={"PENDING_MAP_SIZE": 20}),
    )
    first = planned.source[: planned.source.index("/* first.c */")]
    second = planned.source[
        planned.source.index("/* first.c */") : planned.source.index("/* second.c */")
    ]
    assert "#define PENDING_MAP_SIZE 10" in first and "#define NS_PART first" in first
    assert "#define HAVE_TP_tcp_tcp_receive_reset 1" in first
    assert "HAVE_TP_sock_inet_sock_set_state 1" not in first
    assert "#undef PENDING_MAP_SIZE" in second and "#undef HAVE_TP_tcp_tcp_receive_reset" in second
    assert "#define PENDING_MAP_SIZE 20" in second
    assert planned.source.index("struct tp_tcp_tcp_receive_reset {") < planned.source.index(
        "/* common */"
    )


def test_map_indexes_are_module_wide_and_a_shared_map_has_one():
    planned = plan(
        part("retransmits", OWNER_STATE, map_names=("owners", "retransmits")),
        part("resets", OWNER_STATE, map_names=("owners", "resets")),
    )
    assert planned.map_indexes == {"owners": 0, "retransmits": 1, "resets": 2}
    assert "#define NS_MAP_COUNT 3" in planned.source
    assert "#define MAP_RESETS 2" in planned.source


def test_a_handler_the_kernel_cannot_feed_is_left_out_alone():
    planned = plan(
        part("connections", STATE, ProgramSpec("tcp:tcp_receive_reset", ("no_such_field",))),
        part("resets", RESET),
    )
    assert planned.problems == {
        ("connections", "tcp_receive_reset"): "tcp:tcp_receive_reset lacks fields no_such_field"
    }
    by_point = {d.attach_to: d.handlers for d in planned.dispatchers}
    assert by_point["tcp:tcp_receive_reset"] == ("resets__on_tcp_receive_reset",)


def test_shared_header_map_sizes_take_the_largest_and_other_values_must_agree():
    sized = plan(
        part("a", shared_sources=("owners.h",), defines={"OWNERS_MAP_SIZE": 10}),
        part("b", shared_sources=("owners.h",), defines={"OWNERS_MAP_SIZE": 30}),
    )
    header = sized.source[: sized.source.index("/* owners */")]
    assert "#define OWNERS_MAP_SIZE 30" in header
    with pytest.raises(BpfLoadError, match="NS_CGROUP_LABELS"):
        plan(
            part("a", module_defines={"NS_CGROUP_LABELS": 1}),
            part("b", module_defines={"NS_CGROUP_LABELS": 2}),
        )


def test_one_tracepoint_attached_at_two_points_cannot_share_a_module():
    """Its argument struct would be two: the exporter then compiles the collectors apart."""
    moved = ProgramSpec("tcp:tcp_receive_reset", attach_point="tcp:tcp_send_reset")
    with pytest.raises(BpfLoadError, match="two tracepoints"):
        plan(part("a", RESET), part("b", moved))
