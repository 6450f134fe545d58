"""End to end: UDP datagrams on a connected socket are counted whatever sends them: write(),
writev(), a dup'd descriptor, forked children and a process the descriptor was passed to
(SCM_RIGHTS), each under the sender's own comm and uid; an explicit sendto() address on that
socket still wins.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.helpers import free_port, named_python, value

pytestmark = pytest.mark.root

METRIC = "netsnoop_udp_sends_total"

SENDER = """
import ctypes, os, socket, sys
port, other, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", port))
for _ in range(5):
    os.write(s.fileno(), b"w")
for _ in range(2):
    os.writev(s.fileno(), [b"v", b"v"])
dup = os.dup(s.fileno())
for _ in range(3):
    os.write(dup, b"d")
libc = ctypes.CDLL(None)
for name, uid in ((b"nsx-udpkid1", 5101), (b"nsx-udpkid2", 5102)):
    pid = os.fork()
    if pid == 0:
        libc.prctl(15, name, 0, 0, 0)  # PR_SET_NAME: the child's own comm
        os.setgid(uid)
        os.setuid(uid)
        os.write(dup, b"c")
        os._exit(0)
    os.waitpid(pid, 0)
s.sendto(b"x", ("127.0.0.1", other))  # an explicit address on a connected socket
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
    unix.connect(path)
    socket.send_fds(unix, [b"fd"], [s.fileno()])
    unix.recv(1)  # the other process has sent
"""

FD_RECEIVER = """
import os, socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(1)
print("listening", flush=True)
connection, _ = server.accept()
_, fds, _, _ = socket.recv_fds(connection, 16, 1)
for _ in range(2):
    os.write(fds[0], b"r")
connection.send(b"k")
"""


def test_connected_udp_sends_are_counted_per_sender_whatever_the_call(exporter, bin_dir, tmp_path):
    port, other = free_port(), free_port()
    path = str(tmp_path / "fd.sock")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_sink,
    ):
        sink.bind(("127.0.0.1", port))  # so no ICMP error fails the next send
        other_sink.bind(("127.0.0.1", other))
        receiver = subprocess.Popen(
            [named_python(bin_dir, "nsx-udpfdrecv"), "-c", FD_RECEIVER, path],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.stdout is not None and receiver.stdout.readline().strip() == "listening"
            sender = named_python(bin_dir, "nsx-udpsend")
            subprocess.run(
                [sender, "-c", SENDER, str(port), str(other), path], check=True, timeout=30
            )
            assert receiver.wait(timeout=30) == 0
        finally:
            receiver.kill()
            receiver.wait()
        after = exporter.wait_for(METRIC, dict(port=str(port)), 14)
    assert value(after, METRIC, port=str(port), comm="nsx-udpsend", uid="0") == 10
    assert value(after, METRIC, port=str(port), comm="nsx-udpkid1", uid="5101") == 1
    assert value(after, METRIC, port=str(port), comm="nsx-udpkid2", uid="5102") == 1
    assert value(after, METRIC, port=str(port), comm="nsx-udpfdrecv", uid="0") == 2
    assert value(after, METRIC, port=str(port)) == 14
    assert value(after, METRIC, port=str(other), comm="nsx-udpsend") == 1
    assert value(after, METRIC, port=str(other)) == 1
