"""The kallsyms resolver, on kallsyms tables written to files."""

from __future__ import annotations

import logging
from pathlib import Path

from exporter.kernel.kallsyms import RETRY_UNKNOWN_S, KernelSymbols

TABLE = """\
ffffffff81000000 T _stext
ffffffff81001000 t tcp_v4_rcv
ffffffff81001800 d some_data
ffffffff81002000 T nf_hook_slow
ffffffff81003000 W weak_function
ffffffffc0a00000 t nft_do_chain\t[nf_tables]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kallsyms"
    path.write_text(text)
    return path


def test_addresses_resolve_to_the_function_containing_them(tmp_path):
    symbols = KernelSymbols(write(tmp_path, TABLE))
    found = symbols.resolve([0xFFFFFFFF81001234, 0xFFFFFFFF81001900, 0xFFFFFFFF81002000])
    assert found == {
        0xFFFFFFFF81001234: "tcp_v4_rcv",
        0xFFFFFFFF81001900: "tcp_v4_rcv",  # a data symbol in between is not a function
        0xFFFFFFFF81002000: "nf_hook_slow",
    }


def test_module_and_weak_symbols_lose_their_decoration(tmp_path):
    symbols = KernelSymbols(write(tmp_path, TABLE))
    assert symbols.resolve([0xFFFFFFFFC0A00042, 0xFFFFFFFF81003010]) == {
        0xFFFFFFFFC0A00042: "nft_do_chain",
        0xFFFFFFFF81003010: "weak_function",
    }


def test_below_every_symbol_or_zero_is_unknown(tmp_path):
    symbols = KernelSymbols(write(tmp_path, TABLE))
    assert symbols.resolve([0x1000, 0]) == {0x1000: "unknown", 0: "unknown"}


def test_hidden_addresses_give_unknown(tmp_path):
    """kptr_restrict shows every address as zeros to a reader without CAP_SYSLOG."""
    hidden = "".join(f"0000000000000000 {line[17:]}\n" for line in TABLE.splitlines())
    symbols = KernelSymbols(write(tmp_path, hidden))
    assert symbols.resolve([0xFFFFFFFF81001234]) == {0xFFFFFFFF81001234: "unknown"}


def test_unreadable_table_gives_unknown(tmp_path):
    symbols = KernelSymbols(tmp_path / "missing")
    assert symbols.resolve([0xFFFFFFFF81001234]) == {0xFFFFFFFF81001234: "unknown"}


def test_answers_are_cached(tmp_path):
    path = write(tmp_path, TABLE)
    symbols = KernelSymbols(path)
    assert symbols.resolve([0xFFFFFFFF81001234])[0xFFFFFFFF81001234] == "tcp_v4_rcv"
    path.write_text("")  # a new read would find nothing
    assert symbols.resolve([0xFFFFFFFF81001234])[0xFFFFFFFF81001234] == "tcp_v4_rcv"


def test_this_kernels_table_resolves_a_known_function():
    """/proc/kallsyms of the running kernel; addresses are hidden from non-root readers."""
    kallsyms = Path("/proc/kallsyms").read_text().splitlines()
    address = next(
        int(line.split()[0], 16) for line in kallsyms if line.split()[2:3] == ["tcp_v4_rcv"]
    )
    name = KernelSymbols().resolve([address + 1])[address + 1]
    assert name == ("tcp_v4_rcv" if address else "unknown")


def test_unknown_is_asked_again_once_addresses_show_and_hidden_ones_warn_once(tmp_path, caplog):
    """A location first seen under kptr_restrict=2 gets its name after the sysctl is restored."""
    hidden = "".join(f"0000000000000000 {line[17:]}\n" for line in TABLE.splitlines())
    path = write(tmp_path, hidden)
    now = [0.0]
    symbols = KernelSymbols(path, clock=lambda: now[0])
    address = 0xFFFFFFFF81001234
    with caplog.at_level(logging.WARNING):
        assert symbols.resolve([address])[address] == "unknown"
        now[0] += RETRY_UNKNOWN_S
        assert symbols.resolve([address])[address] == "unknown"
    assert len([r for r in caplog.records if "kptr_restrict" in r.getMessage()]) == 1
    path.write_text(TABLE)  # the sysctl was restored
    now[0] += RETRY_UNKNOWN_S / 2
    assert symbols.resolve([address])[address] == "unknown"  # not asked again yet
    now[0] += RETRY_UNKNOWN_S / 2
    assert symbols.resolve([address])[address] == "tcp_v4_rcv"


def test_visible_addresses_log_nothing(tmp_path, caplog):
    KernelSymbols(write(tmp_path, TABLE)).resolve([0xFFFFFFFF81001234])
    assert caplog.records == []
