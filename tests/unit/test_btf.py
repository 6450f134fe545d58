"""The BTF offset resolver against a recorded blob (tests/data/btf/kernel-shaped.btf: clang's
BTF for kernel-shaped.c, fetched back from the kernel by record_blob.py). The expected offsets
are those of the C layout rules for kernel-shaped.c, worked out by hand."""

from pathlib import Path

import pytest

from exporter.kernel.btf import Btf, BtfError, Member

BLOB = Path(__file__).parent.parent / "data" / "btf" / "kernel-shaped.btf"


@pytest.fixture(scope="module")
def btf() -> Btf:
    return Btf(BLOB.read_bytes())


@pytest.mark.parametrize(
    ("struct_name", "path", "offset", "size"),
    [
        ("sock_common", "skc_daddr", 0, 4),  # inside an anonymous struct inside a union
        ("sock_common", "skc_rcv_saddr", 4, 4),
        ("sock_common", "skc_dport", 12, 2),
        ("sock_common", "skc_num", 14, 2),
        ("sock_common", "skc_family", 16, 2),
        ("sock_common", "skc_state", 18, 1),  # volatile
        ("sock_common", "skc_bind_node", 24, 16),  # array of pointers
        ("sock_common", "skc_net", 48, 8),  # typedef of a struct holding a pointer
        ("sock_common", "skc_net.net", 48, 8),
        ("sock_common", "skc_v6_daddr", 56, 16),  # array of a const typedef
        ("sock", "__sk_common.skc_net", 48, 8),
        ("sock", "sk_type", 72, 2),
        ("net", "ns.inum", 168, 4),  # a struct held by value, then its member
        ("net", "net_cookie", 176, 8),
        ("shapes_t", "net.ns.inum", 248, 4),
    ],
)
def test_member_offsets_and_sizes(btf, struct_name, path, offset, size):
    assert btf.member(struct_name, path) == Member(offset, size)
    assert btf.offset(struct_name, path) == offset


def test_bitfields_carry_bit_offset_and_width(btf):
    assert btf.member("sock_common", "skc_reuse") == Member(19, 1, 0, 4)
    assert btf.member("sock_common", "skc_reuseport") == Member(19, 1, 4, 1)
    with pytest.raises(BtfError, match="bitfield"):
        btf.offset("sock_common", "skc_reuseport")


def test_struct_sizes(btf):
    assert btf.struct_size("sock_common") == 72
    assert btf.struct_size("net") == 184


@pytest.mark.parametrize(
    ("struct_name", "path", "reason"),
    [
        ("task_struct", "pid", "struct task_struct is not in"),
        ("net", "ns.missing", "has no member ns.missing"),
        ("sock_common", "skc_net.net.ns", "pointer cannot be crossed"),
    ],
)
def test_unknown_structs_members_and_pointers_are_named(btf, struct_name, path, reason):
    with pytest.raises(BtfError, match=reason):
        btf.member(struct_name, path)


def test_bad_blobs_are_refused(tmp_path):
    with pytest.raises(BtfError, match="bad magic"):
        Btf(b"\0" * 64)
    with pytest.raises(BtfError, match="shorter"):
        Btf(b"\x9f\xeb")
    truncated = bytearray(BLOB.read_bytes())
    truncated[12:16] = (int.from_bytes(truncated[12:16], "little") - 3).to_bytes(4, "little")
    with pytest.raises(BtfError, match="malformed"):
        Btf(bytes(truncated))
    with pytest.raises(BtfError, match="CONFIG_DEBUG_INFO_BTF"):
        Btf.load(tmp_path / "vmlinux")
