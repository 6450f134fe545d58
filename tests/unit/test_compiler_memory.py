"""Which LLVM/clang pages the exporter drops after compiling: only clean, read-only ones."""

from __future__ import annotations

from exporter.kernel.bpf import clean_compiler_mappings

SMAPS = """\
7f0000000000-7f0000400000 r--p 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:               4096 kB
Rss:                1024 kB
Anonymous:             0 kB
7f0000400000-7f0002400000 r-xp 00400000 08:01 1234 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:              32768 kB
Rss:               30000 kB
Anonymous:             0 kB
7f0002400000-7f0002600000 r--p 02400000 08:01 1234 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:               2048 kB
Rss:                2048 kB
Anonymous:          2048 kB
7f0002600000-7f0002700000 rw-p 02600000 08:01 1234 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:               1024 kB
Rss:                1024 kB
Anonymous:             0 kB
7f0003000000-7f0003800000 r-xp 00000000 08:01 99 /usr/lib/llvm-14/lib/libclang-cpp.so.14
Size:               8192 kB
Rss:                8000 kB
Anonymous:             0 kB
7f0004000000-7f0004100000 r-xp 00000000 08:01 7 /usr/lib/x86_64-linux-gnu/libc.so.6
Size:               1024 kB
Rss:                 900 kB
Anonymous:             0 kB
7f0005000000-7f0005100000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                1024 kB
Anonymous:          1024 kB
"""


def test_only_clean_read_only_compiler_mappings_are_dropped() -> None:
    assert clean_compiler_mappings(SMAPS) == [
        (0x7F0000000000, 0x400000),  # rodata: read-only, no private copies
        (0x7F0000400000, 0x2000000),  # text
        (0x7F0003000000, 0x800000),  # clang's text
    ]
    # not the relocated (RELRO) pages, which hold private copies; not writable data;
    # not other libraries; not anonymous memory


def test_no_compiler_loaded_drops_nothing() -> None:
    assert clean_compiler_mappings("") == []
