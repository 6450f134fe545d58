"""How the BPF programs encode the values they share: the process name, the uid of "no
process" and the IP protocol numbers. One home, used by every collector that decodes them."""

from __future__ import annotations

NO_UID = 0xFFFFFFFF  # bpf/common.h NO_UID: an event with no process behind it (inbound refused)
IP_PROTOCOLS = {"tcp": 6, "udp": 17}  # IPPROTO_TCP, IPPROTO_UDP
IP_PROTOCOL_NAMES = {number: name for name, number in IP_PROTOCOLS.items()}


def decode_comm(raw: bytes) -> str:
    """The kernel's comm is bytes up to a NUL; anything not UTF-8 is replaced, never raised."""
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
