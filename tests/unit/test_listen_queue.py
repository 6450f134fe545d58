"""Listen-queue series from sock_diag records, given as data; owners from a /proc tree."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from exporter.collectors.listen_queue import DropCounts, ListenerOwners, listen_families
from exporter.kernel.sockets import ListeningSocket, skmeminfo_drops


def listener(port: int, inode: int, queue: int, backlog: int, drops: int = 0, v6: bool = False):
    family = socket.AF_INET6 if v6 else socket.AF_INET
    return ListeningSocket(family, port, 0, inode, queue, backlog, drops)


def samples(families, name):
    return next(f for f in families if f.name == name).samples


def test_ipv4_and_ipv6_listeners_on_one_port_add_up():
    listeners = [listener(8080, 1, 2, 1), listener(8080, 2, 3, 128, v6=True), listener(22, 3, 0, 5)]
    comms = {1: "nginx", 2: "nginx", 3: "sshd"}
    families = listen_families(listeners, {8080: 4}, comms, {1: 6, 2: 1})
    assert samples(families, "netsnoop_listen_queue_length") == {
        ("8080", "nginx"): 5,
        ("22", "sshd"): 0,
    }
    assert samples(families, "netsnoop_listen_queue_capacity") == {
        ("8080", "nginx"): 129,
        ("22", "sshd"): 5,
    }
    assert samples(families, "netsnoop_listen_syn_queue_length") == {("8080", "nginx"): 4}
    assert samples(families, "netsnoop_listen_drops")[("8080", "nginx")] == 7


def test_half_open_connections_of_a_port_shared_by_two_programs_have_no_comm():
    listeners = [listener(443, 1, 0, 16), listener(443, 2, 0, 16)]
    families = listen_families(listeners, {443: 2, 9999: 1}, {1: "a", 2: "b"}, {})
    assert samples(families, "netsnoop_listen_syn_queue_length") == {
        ("443", ""): 2,
        ("9999", ""): 1,  # a listener that closed while its handshakes were pending
    }


def test_drop_increments_are_per_socket():
    counts = DropCounts()
    assert counts.increments([listener(80, 1, 0, 1, drops=3)]) == {1: 3}
    assert counts.increments([listener(80, 1, 0, 1, drops=5), listener(80, 2, 0, 1)]) == {1: 2}
    # socket 1 closed: its port does not go backwards, socket 2's drops still count
    assert counts.increments([listener(80, 2, 0, 1, drops=4)]) == {2: 4}


def test_skmeminfo_drops_is_the_ninth_u32():
    """The attribute as pyroute2 0.9.7 returned it here for a backlog-1 listener (drops 8)."""
    text = (
        "00:00:00:00:00:00:02:00:00:00:00:00:00:40:00:00:00:00:00:00:00:00:00:00:"
        "00:00:00:00:00:00:00:00:08:00:00:00"
    )
    assert skmeminfo_drops(text) == 8
    assert skmeminfo_drops(None) == 0
    assert skmeminfo_drops("00:01") == 0


def fake_proc(root: Path, pid: int, comm: str, inodes: list[int]) -> None:
    fd_dir = root / str(pid) / "fd"
    fd_dir.mkdir(parents=True)
    (root / str(pid) / "comm").write_text(comm + "\n")
    for fd, inode in enumerate(inodes, start=3):
        os.symlink(f"socket:[{inode}]", fd_dir / str(fd))


def test_owners_are_found_once_and_forgotten_with_their_socket(tmp_path):
    fake_proc(tmp_path, 100, "nginx", [11, 12])
    owners = ListenerOwners(str(tmp_path))
    assert owners.comms([11, 99]) == {11: "nginx", 99: ""}
    (tmp_path / "100" / "comm").write_text("renamed\n")
    assert owners.comms([11, 12]) == {11: "nginx", 12: "renamed"}  # 11 cached, 12 new
    assert owners.comms([12]) == {12: "renamed"}


def test_owner_comm_that_is_not_utf8_is_replaced_not_raised(tmp_path):
    """A process can name itself with any bytes (prctl); reading it must not crash the read."""
    fake_proc(tmp_path, 77, "placeholder", [21])
    (tmp_path / "77" / "comm").write_bytes(b"bad\xff\xfe\n")
    assert ListenerOwners(str(tmp_path)).comms([21]) == {21: "bad\ufffd\ufffd"}
