"""Kernel addresses to function names, from /proc/kallsyms, for drop locations.

bcc's ksym loads the whole table into its own cache on first use and has no way to point it at
another file; drop locations are few (tens of distinct call sites), so this resolver instead
streams the file once per batch of new addresses and remembers only the answers. An
``unknown`` answer is asked again after RETRY_UNKNOWN_S: addresses hidden by
kernel.kptr_restrict come back once the sysctl (or the capability) allows them.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator

from exporter.kernel import hostfs

log = logging.getLogger(__name__)

UNKNOWN = "unknown"  # hidden addresses (kptr_restrict), or outside every text symbol
TEXT_TYPES = frozenset("tTwW")  # code; data symbols between functions would mislead
CACHE_LIMIT = 8192  # answers kept; past it the cache starts over
RETRY_UNKNOWN_S = 60.0  # an unknown answer is asked again after this long


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

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path or hostfs.procfs("kallsyms")
        self._clock = clock
        self._cache: dict[int, str] = {}
        self._unknown_since: dict[int, float] = {}  # when each unknown answer was given
        self._warned_hidden = False

    def resolve(self, addresses: Iterable[int]) -> dict[int, str]:
        """Function name per address (``unknown`` when kallsyms cannot say); never raises."""
        wanted = set(addresses)
        now = self._clock()
        missing = {
            a
            for a in wanted
            if a not in self._cache or now - self._unknown_since.get(a, now) >= RETRY_UNKNOWN_S
        }
        if missing:
            if len(self._cache) + len(missing) > CACHE_LIMIT:
                self._cache.clear()
                self._unknown_since.clear()
            for address, name in self._lookup(missing).items():
                self._cache[address] = name
                if name == UNKNOWN:
                    self._unknown_since[address] = now
                else:
                    self._unknown_since.pop(address, None)
        return {address: self._cache.get(address, UNKNOWN) for address in wanted}

    def _lookup(self, addresses: set[int]) -> dict[int, str]:
        real = {a for a in addresses if a}
        visible = 0

        def counted(symbols: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
            nonlocal visible
            for symbol in symbols:
                visible += 1
                yield symbol

        try:
            with open(self.path, encoding="utf-8", errors="replace") as table:
                found = nearest_symbols(counted(text_symbols(table)), real)
        except OSError as error:
            found = {}
            self._warn_hidden(f"cannot read it ({error.strerror})")
        else:
            if visible:
                self._warned_hidden = False
            else:
                self._warn_hidden("it shows every address as 0 (kernel.kptr_restrict)")
        return {address: found.get(address, UNKNOWN) for address in addresses}

    def _warn_hidden(self, why: str) -> None:
        """Once per spell of hidden addresses: the operator can fix it, the log must not flood."""
        if self._warned_hidden:
            return
        self._warned_hidden = True
        log.warning(
            "%s: %s, so drop locations read symbol=%r; set kernel.kptr_restrict=1 or lower and "
            "grant CAP_SYSLOG; they are looked up again every %.0f s",
            self.path,
            why,
            UNKNOWN,
            RETRY_UNKNOWN_S,
        )
