"""Tracepoint format parsing, on format files copied from this project's 6.18 kernel."""

from __future__ import annotations

from pathlib import Path

from exporter.kernel.bpf import ProgramSpec, format_problem
from exporter.kernel.tracefs import Tracefs, parse_format

TRACEFS_618 = Path(__file__).parents[1] / "data" / "tracefs-6.18"


def test_fields_offsets_sizes_and_arrays():
    fmt = Tracefs(TRACEFS_618).format("sock:inet_sock_set_state")
    assert fmt is not None
    assert [f.name for f in fmt.fields][:4] == ["skaddr", "oldstate", "newstate", "sport"]
    skaddr, daddr_v6 = fmt.field("skaddr"), fmt.field("daddr_v6")
    assert (skaddr.offset, skaddr.size, skaddr.array_length) == (8, 8, None)
    assert (daddr_v6.offset, daddr_v6.size, daddr_v6.array_length) == (56, 16, 16)
    assert fmt.field("oldstate").signed and not fmt.field("sport").signed


def test_enum_fields_become_plain_integers():
    """enum sk_rst_reason is unknown to older headers: the struct must not name it."""
    fmt = Tracefs(TRACEFS_618).format("tcp:tcp_send_reset")
    struct = fmt.c_struct()
    assert "enum" not in struct
    assert "u32 reason;" in struct
    assert "u8 saddr[28];" in struct


def test_struct_pads_to_each_offset():
    fmt = Tracefs(TRACEFS_618).format("skb:kfree_skb")
    struct = fmt.c_struct()
    # protocol ends at 34, reason starts at 36: two bytes of padding between them
    assert "u16 protocol;\n    u8 __pad4[2];\n    u32 reason;" in struct
    assert struct.startswith("struct tp_skb_kfree_skb {\n    u64 __common_header;")


def test_symbolic_table_decodes_reason_names():
    reset = Tracefs(TRACEFS_618).format("tcp:tcp_send_reset")
    assert reset.symbols("reason")[1] == "NO_SOCKET"
    drops = Tracefs(TRACEFS_618).format("skb:kfree_skb").symbols("reason")
    assert drops[2] == "NOT_SPECIFIED" and drops[3] == "NO_SOCKET"
    assert reset.symbols("no_such_field") == {}


def test_missing_tracepoint_is_none(tmp_path):
    assert Tracefs(tmp_path).format("tcp:tcp_send_reset") is None


def test_program_spec_checks_fields_and_sizes():
    tracefs = Tracefs(TRACEFS_618)
    reset = tracefs.format("tcp:tcp_send_reset")
    assert (
        format_problem(ProgramSpec("tcp:tcp_send_reset", ("skaddr",), (("saddr", 28),)), reset)
        is None
    )
    assert "lacks fields nope" in format_problem(
        ProgramSpec("tcp:tcp_send_reset", ("nope",)), reset
    )
    old = parse_format("tcp", "tcp_send_reset", reset_format_before_6_10())
    assert "saddr is not 28 bytes" in format_problem(
        ProgramSpec("tcp:tcp_send_reset", ("skaddr",), (("saddr", 28),)), old
    )
    assert "not in this kernel" in format_problem(ProgramSpec("tcp:nope"), None)


def reset_format_before_6_10() -> str:
    """tcp_send_reset as 5.15 to 6.9 define it (include/trace/events/tcp.h, TCP_EVENT_SK_SKB_RST
    before commit 19822a980e19 "trace: tcp: fully support trace_tcp_send_reset"): IPv4 and
    IPv6 addresses as separate fields, no reason."""
    return """name: tcp_send_reset
ID: 1234
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:int state;\toffset:24;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:32;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:34;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:38;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:42;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:58;\tsize:16;\tsigned:0;

print fmt: "skbaddr=%p skaddr=%p family=%s sport=%hu dport=%hu", REC->skbaddr, REC->skaddr
"""
