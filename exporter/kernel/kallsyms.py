"""Kernel addresses to function names, from /proc/kallsyms, for drop locations.

bcc's ksym loads the whole table into its own cache on first use and has no way to point it at
another file; drop locations are few (tens of distinct call sites), so this resolver instead
streams the file once per batch of new addresses and remembers only the answers.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterable, Iterator
from typing import IO

from exporter.kernel import hostfs

log = logging.getLogger(__name__)

UNKNOWN = "unknown"  # hidden addresses (kptr_restrict), or outside every text symbol
TEXT_TYPES = frozenset("tTwW")  # code; data symbols between functions would mislead
CACHE_LIMIT = 8192  # answers kept; past it the cache starts over


def text_symbols(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(address, name) of the code symbols of kallsyms lines; a module's ``[name]`` is dropped.
    Lines with address 0 (kptr_restrict hides every address) yield nothing."""
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[1] not in TEXT_TYPES:
            continue
        try:
            address = int(parts[0], 16)
        except ValueError:
            continue
        if address:
            yield address, parts[2]


def nearest_symbols(symbols: Iterable[tuple[int, str]], addresses: Iterable[int]) -> dict[int, str]:
    """For each address, the symbol with the highest start at or below it, in one pass.

    Each symbol is a candidate only for the lowest wanted address at or above it; a prefix
    maximum over the sorted addresses then hands every address the best start below it.
    """
    targets = sorted(set(addresses))
    best: list[tuple[int, str] | None] = [None] * len(targets)
    for start, name in symbols:
        index = bisect.bisect_left(targets, start)
        if index < len(targets):
            current = best[index]
            if current is None or start > current[0]:
                best[index] = (start, name)
    found: dict[int, str] = {}
    running: tuple[int, str] | None = None
    for target, candidate in zip(targets, best, strict=True):
        if candidate is not None and (running is None or candidate[0] > running[0]):
            running = candidate
        found[target] = running[1] if running is not None else UNKNOWN
    return found


class KernelSymbols:
    """Resolves and caches; the path is injectable so tests can use a written table."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = path or hostfs.procfs("kallsyms")
        self._cache: dict[int, str] = {}
        self._checked = False

    def resolve(self, addresses: Iterable[int]) -> dict[int, str]:
        """Function name per address (``unknown`` when kallsyms cannot say); never raises."""
        wanted = set(addresses)
        missing = {a for a in wanted if a not in self._cache}
        if missing:
            if len(self._cache) + len(missing) > CACHE_LIMIT:
                self._cache.clear()
            self._cache.update(self._lookup(missing))
        return {address: self._cache.get(address, UNKNOWN) for address in wanted}

    def _lookup(self, addresses: set[int]) -> dict[int, str]:
        real = {a for a in addresses if a}
        try:
            with open(self.path, encoding="utf-8", errors="replace") as table:
                if not self._checked:
                    self._warn_if_hidden(table)
                    table.seek(0)
                found = nearest_symbols(text_symbols(table), real)
        except OSError as error:
            if not self._checked:
                self._checked = True
                log.warning(
                    "drop symbols will be %r: cannot read %s: %s", UNKNOWN, self.path, error
                )
            found = {}
        return {address: found.get(address, UNKNOWN) for address in addresses}

    def _warn_if_hidden(self, table: IO[str]) -> None:
        """Once: say why every symbol will be unknown when the kernel hides the addresses (the
        first code symbol's address is zero; absolute symbols may be zero anyway)."""
        self._checked = True
        first_code = next((f for f in map(str.split, table) if f[1:2] and f[1] in TEXT_TYPES), None)
        if first_code is None or first_code[0].strip("0"):
            return
        try:
            restrict = hostfs.procfs("sys/kernel/kptr_restrict").read_text().strip()
        except OSError:
            restrict = "?"
        log.warning(
            "drop symbols will be %r: %s shows no kernel addresses (kernel.kptr_restrict=%s): "
            "grant CAP_SYSLOG, and set kernel.kptr_restrict to 0 or 1",
            UNKNOWN,
            self.path,
            restrict,
        )
