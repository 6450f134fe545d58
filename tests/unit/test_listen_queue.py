"""Listen-queue series from sock_diag records, given as data; listener owners from a /proc
tree (the serving holder is shared with the accepted-connection counts)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from exporter.collectors.listen_queue import DropCounts, listen_families
from exporter.kernel.sockets import ListeningSocket, skmeminfo_drops, socket_holders
from exporter.listeners import ListenerOwner, ListenerView, serving_holder

HOST_NS = 4026531840


def listener(
    port: int,
    inode: int,
    queue: int,
    backlog: int,
    drops: int = 0,
    v6: bool = False,
    netns: int = HOST_NS,
):
    family = socket.AF_INET6 if v6 else socket.AF_INET
    return ListeningSocket(family, port, 0, inode, queue, backlog, drops, netns)


def samples(families, name):
    return next(f for f in families if f.name == name).samples


def test_ipv4_and_ipv6_listeners_on_one_port_add_up():
    listeners = [listener(8080, 1, 2, 1), listener(8080, 2, 3, 128, v6=True), listener(22, 3, 0, 5)]
    comms = {1: ("nginx",), 2: ("nginx",), 3: ("sshd",)}
    families = listen_families(listeners, {(HOST_NS, 8080): 4}, comms, {1: 6, 2: 1})
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
    half_open = {(HOST_NS, 443): 2, (HOST_NS, 9999): 1}
    families = listen_families(listeners, half_open, {1: ("a",), 2: ("b",)}, {})
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


def test_pods_listening_on_one_port_keep_their_own_labels_and_half_open_counts():
    """Two pods on 8080, each in its own network namespace, told apart by the workload labels;
    each namespace's half-open handshakes go to its own listener."""
    listeners = [listener(8080, 1, 3, 128, netns=11), listener(8080, 2, 1, 64, netns=12)]
    owners = {1: ("app", "shop", "web-a", "web"), 2: ("app", "shop", "web-b", "web")}
    families = listen_families(
        listeners,
        {(11, 8080): 2, (12, 8080): 5},
        owners,
        {},
        ("port", "comm", "namespace", "pod", "container"),
    )
    assert samples(families, "netsnoop_listen_queue_length") == {
        ("8080", "app", "shop", "web-a", "web"): 3,
        ("8080", "app", "shop", "web-b", "web"): 1,
    }
    assert samples(families, "netsnoop_listen_syn_queue_length") == {
        ("8080", "app", "shop", "web-a", "web"): 2,
        ("8080", "app", "shop", "web-b", "web"): 5,
    }


def test_the_serving_holder_is_not_pid_1_nor_a_holder_that_passed_the_socket_down():
    parents = {1: 0, 50: 1, 60: 50, 61: 50, 70: 1, 80: 70}
    # systemd (pid 1) keeps an activated socket; the service it started serves it
    assert serving_holder([1, 70], parents.get) == 70
    # a wrapper (50) bound the socket and forked two workers: the lower worker pid names it
    assert serving_holder([50, 61, 60], parents.get) == 60
    # a grandchild counts too, and a lone holder is itself whoever it is
    assert serving_holder([70, 80], parents.get) == 80
    assert serving_holder([1], parents.get) == 1
    assert serving_holder([], parents.get) is None


def test_owner_at_picks_the_lowest_socket_of_that_namespace_and_port():
    view = ListenerView(
        listeners=[listener(80, 9, 0, 1, netns=11), listener(80, 5, 0, 1, v6=True, netns=11)],
        owners={9: ListenerOwner(9, 0, "late"), 5: ListenerOwner(5, 0, "first")},
    )
    assert view.owner_at(11, 80) == ListenerOwner(5, 0, "first")
    assert view.owner_at(12, 80) is None


def fake_proc(root: Path, pid: int, comm: str, inodes: list[int]) -> None:
    fd_dir = root / str(pid) / "fd"
    fd_dir.mkdir(parents=True)
    (root / str(pid) / "comm").write_text(comm + "\n")
    for fd, inode in enumerate(inodes, start=3):
        os.symlink(f"socket:[{inode}]", fd_dir / str(fd))


def test_socket_holders_lists_every_process_holding_a_socket(tmp_path):
    fake_proc(tmp_path, 1, "systemd", [11])
    fake_proc(tmp_path, 100, "nginx", [11, 12, 11])  # a dup'd descriptor: listed once
    fake_proc(tmp_path, 200, "other", [13])
    holders = socket_holders({11, 12, 99}, str(tmp_path))
    assert {inode: sorted(pids) for inode, pids in holders.items()} == {11: [1, 100], 12: [100]}
