"""Records kernel-shaped.btf, the small BTF blob tests/unit/test_btf.py reads.

Run as root with Debian's bcc: ``/usr/bin/python3 tests/data/btf/record_blob.py``. bcc's clang
compiles kernel-shaped.c for BPF and emits BTF for the map's value type and everything it
holds; the kernel checks that BTF when bcc loads it, and this script fetches it back from the
kernel (BPF_BTF_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD) byte for byte. So the blob is written
by clang and accepted by the kernel, not by the reader under test.
"""

import ctypes
import json
import subprocess
from pathlib import Path

from bcc import BPF

HERE = Path(__file__).parent
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_BTF_GET_FD_BY_ID = 19
SYS_BPF = 321  # x86_64

libc = ctypes.CDLL(None, use_errno=True)


def bpf(command: int, attr: ctypes.Array) -> int:
    result = libc.syscall(SYS_BPF, command, ctypes.byref(attr), ctypes.sizeof(attr))
    if result < 0:
        raise OSError(ctypes.get_errno(), f"bpf({command})")
    return result


def btf_bytes(btf_id: int) -> bytes:
    attr = (ctypes.c_uint8 * 128)()
    ctypes.c_uint32.from_buffer(attr, 0).value = btf_id
    fd = bpf(BPF_BTF_GET_FD_BY_ID, attr)
    buffer = ctypes.create_string_buffer(1 << 20)
    info = (ctypes.c_uint8 * 64)()  # struct bpf_btf_info: btf (u64), btf_size, id, ...
    ctypes.c_uint64.from_buffer(info, 0).value = ctypes.addressof(buffer)
    ctypes.c_uint32.from_buffer(info, 8).value = len(buffer)
    attr = (ctypes.c_uint8 * 128)()
    ctypes.c_uint32.from_buffer(attr, 0).value = fd  # info.bpf_fd
    ctypes.c_uint32.from_buffer(attr, 4).value = ctypes.sizeof(info)  # info.info_len
    ctypes.c_uint64.from_buffer(attr, 8).value = ctypes.addressof(info)  # info.info
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    size = ctypes.c_uint32.from_buffer(info, 8).value
    return buffer.raw[:size]


program = BPF(src_file=str(HERE / "kernel-shaped.c"))
program.load_func("shapes_used", BPF.SOCKET_FILTER)
shown = subprocess.run(
    ["bpftool", "--json", "map", "show", "name", "shapes"],
    capture_output=True,
    text=True,
    check=True,
)
btf_id = json.loads(shown.stdout)["btf_id"]
blob = btf_bytes(btf_id)
(HERE / "kernel-shaped.btf").write_bytes(blob)
print(f"wrote {len(blob)} bytes from BTF id {btf_id}")
