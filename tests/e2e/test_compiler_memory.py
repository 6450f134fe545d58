"""End to end: once its programs are compiled, the exporter holds no clean LLVM/clang pages.

The compile touches some 80 MB of library text that nothing reads again; the exporter drops
those pages (docs/benchmarks.md has the RSS before and after). Needs root and BPF.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.kernel.bpf import clean_compiler_mappings
from tests.helpers import ExporterProcess, value

pytestmark = pytest.mark.root


def resident_kb(smaps: str, ranges: list[tuple[int, int]]) -> int:
    """Summed Rss of the mappings that start at one of ``ranges``."""
    starts = {start for start, _ in ranges}
    total, counting = 0, False
    for line in smaps.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:
            counting = int(fields[0].split("-")[0], 16) in starts
        elif counting and fields[:1] == ["Rss:"]:
            total += int(fields[1])
    return total


def test_compiler_pages_are_released_after_start(exporter: ExporterProcess) -> None:
    series = exporter.scrape()  # the exporter serves normally after the release
    assert value(series, "netsnoop_bpf_program_attached") > 0
    smaps = Path(f"/proc/{exporter.process.pid}/smaps").read_text()
    clean = clean_compiler_mappings(smaps)
    assert clean, "the exporter has no LLVM/clang mapping: bcc not loaded?"
    # the text and read-only data of LLVM and clang are mapped but no longer resident;
    # a few pages may fault back in if a scrape path touches them
    assert resident_kb(smaps, clean) < 2048
