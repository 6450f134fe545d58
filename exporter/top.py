"""``netsnoop-exporter top``: a live per-process and per-port view of a running exporter.

It reads /metrics over HTTP (TLS and basic auth as the exporter's web config asks for them), so
it needs no privileges and no BPF. Rates are the counter increases between two reads divided by
the time between them; the parsing, the rates and the table are pure functions, unit-tested,
and only ``run_live`` touches the terminal (curses from the standard library: no dependency,
and it draws the same over SSH as on a console).
"""

from __future__ import annotations

import argparse
import base64
import math
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    import curses

DEFAULT_URL = "http://localhost:19435/metrics"
WIDTH = 80  # the plain-text output and the narrowest live view fit an 80x24 terminal

# (metric name as exposed, sorted (label, value) pairs) -> value
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[SeriesKey, float]


def parse_exposition(text: str) -> Samples:
    """Every counter sample of a Prometheus text exposition (``_created`` lines left out)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def increases(previous: Samples, current: Samples) -> Samples:
    """What each counter grew by between two reads. A series new since the previous read
    started from 0 (the exporter creates a series with its first increment); a series that
    went down was reset (an exporter restart) and counts from 0 again, as in PromQL."""
    grown: Samples = {}
    for key, value in current.items():
        before = previous.get(key, 0.0)
        grown[key] = value - before if value >= before else value
    return grown


@dataclass(frozen=True)
class Column:
    """One rate column: the sum of ``metric`` over the series whose labels match ``where``."""

    title: str
    metric: str
    where: Mapping[str, str] = field(default_factory=dict)
    unit: str = ""  # "B" for bytes: shown with binary prefixes

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        return name == self.metric and all(labels.get(k) == v for k, v in self.where.items())


@dataclass(frozen=True)
class View:
    name: str
    key_labels: tuple[str, ...]  # a row per distinct value of these labels
    key_widths: tuple[int, ...]
    columns: tuple[Column, ...]
    default_sort: int = 0


CONNECTIONS = "netsnoop_tcp_connections_total"
VIEWS = (
    View(
        "processes",
        ("comm", "uid"),
        (16, 7),
        (
            Column("CONN/s", CONNECTIONS),
            Column("SENT", "netsnoop_socket_sent_bytes_total", unit="B"),
            Column("RECV", "netsnoop_socket_received_bytes_total", unit="B"),
            Column("UDP/s", "netsnoop_udp_sends_total"),
            Column("RETR/s", "netsnoop_tcp_retransmits_total"),
            Column("RST/s", "netsnoop_tcp_resets_total"),
        ),
        default_sort=1,
    ),
    View(
        "ports",
        ("port",),
        (7,),
        (
            Column("IN/s", CONNECTIONS, {"result": "accepted"}),
            Column("OUT/s", CONNECTIONS, {"result": "established"}),
            Column("REFUSED/s", CONNECTIONS, {"result": "refused"}),
            Column("TIMEOUT/s", CONNECTIONS, {"result": "timeout"}),
            Column("LDROP/s", "netsnoop_listen_drops_total"),
            Column("UDPUNR/s", "netsnoop_udp_unreachable_total"),
            Column("RETR/s", "netsnoop_tcp_retransmits_total"),
        ),
        default_sort=2,
    ),
    View(
        "drops",
        ("reason", "symbol"),
        (24, 32),
        (Column("DROPS/s", "netsnoop_packet_drops_total"),),
    ),
)


@dataclass(frozen=True)
class Row:
    key: tuple[str, ...]
    rates: tuple[float, ...]


def table(
    view: View, grown: Samples, seconds: float, sort: int, reverse: bool = False
) -> list[Row]:
    """The view's rows: per key, each column's summed increase per second, sorted by column
    ``sort`` (highest first unless ``reverse``), then by key. Series whose key labels are all
    empty (e.g. an inbound refused connection, which has no process) make no row."""
    sums: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0] * len(view.columns))
    for (name, pairs), value in grown.items():
        labels = dict(pairs)
        for index, column in enumerate(view.columns):
            if column.matches(name, labels):
                key = tuple(labels.get(label, "") for label in view.key_labels)
                if any(key):
                    sums[key][index] += value
    per_second = 1.0 / seconds if seconds > 0 else 0.0
    rows = [Row(key, tuple(v * per_second for v in values)) for key, values in sums.items()]
    rows.sort(key=lambda row: row.key)
    rows.sort(key=lambda row: row.rates[sort], reverse=not reverse)
    return rows


def format_rate(value: float, unit: str = "") -> str:
    """Short enough for a 9-character column: 0, 2.5, 87, 1.2k, 34M; bytes as 1.2Ki, 3.0Mi."""
    if value == 0 or math.isnan(value):
        return "0"
    step, prefixes = (1024.0, ("", "Ki", "Mi", "Gi", "Ti")) if unit == "B" else (
        1000.0, ("", "k", "M", "G", "T"))  # fmt: skip
    for prefix in prefixes:
        if abs(value) < step or prefix == prefixes[-1]:
            return f"{value:.1f}{prefix}" if abs(value) < 10 or prefix else f"{value:.0f}"
        value /= step
    raise AssertionError("unreachable")


def printable(text: str) -> str:
    """A comm may hold any byte but NUL: control characters would break the table (and could
    drive the terminal), so they show as ``?``."""
    return "".join(char if char.isprintable() else "?" for char in text)


def column_title(column: Column) -> str:
    return f"{column.title}/s" if column.unit == "B" else column.title


def render(view: View, rows: Sequence[Row], sort: int, width: int = WIDTH) -> list[str]:
    """The header line and one line per row, each cut to ``width``; the sort column is marked."""
    separators = len(view.key_widths) + len(view.columns) - 1
    room = width - sum(view.key_widths) - separators
    value_width = max(7, min(10, room // len(view.columns)))
    head = [
        label.upper().ljust(w) for label, w in zip(view.key_labels, view.key_widths, strict=True)
    ]
    for index, column in enumerate(view.columns):
        title = column_title(column) + ("*" if index == sort else "")
        head.append(title.rjust(value_width))
    lines = [" ".join(head)[:width]]
    for row in rows:
        cells = [
            printable(text)[:w].ljust(w) for text, w in zip(row.key, view.key_widths, strict=True)
        ]
        cells += [
            format_rate(rate, column.unit).rjust(value_width)
            for rate, column in zip(row.rates, view.columns, strict=True)
        ]
        lines.append(" ".join(cells)[:width])
    return lines


# --- reading the exporter ---------------------------------------------------------------------


class FetchError(Exception):
    pass


def make_fetcher(args: argparse.Namespace) -> Callable[[], str]:
    """A function that reads the exposition once; FetchError says why it could not."""
    context = None
    if args.url.startswith("https:"):
        context = ssl.create_default_context(cafile=args.tls_ca_file or None)
        if args.tls_insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if args.tls_cert_file:
            context.load_cert_chain(args.tls_cert_file, args.tls_key_file or None)
    headers = {"Accept": "text/plain; version=0.0.4"}
    if args.basic_auth_username:
        password = read_password(args.basic_auth_password_file)
        token = base64.b64encode(f"{args.basic_auth_username}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"

    def fetch() -> str:
        request = urllib.request.Request(args.url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=args.timeout, context=context) as answer:
                return answer.read().decode()
        except urllib.error.HTTPError as error:
            raise FetchError(f"{args.url}: HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise FetchError(f"{args.url}: {reason}") from None

    return fetch


def read_password(path: str) -> str:
    if not path:
        return ""
    with open(path, encoding="utf-8") as file:
        return file.read().rstrip("\n")


class Sampler:
    """Successive reads of the exporter, and the increases between the last two."""

    def __init__(self, fetch: Callable[[], str], clock: Callable[[], float] = time.monotonic):
        self.fetch = fetch
        self.clock = clock
        self.previous: Samples = {}
        self.previous_at: float | None = None
        self.grown: Samples = {}
        self.seconds = 0.0

    def read(self) -> None:
        current = parse_exposition(self.fetch())
        now = self.clock()
        if self.previous_at is not None:
            self.grown = increases(self.previous, current)
            self.seconds = now - self.previous_at
        self.previous, self.previous_at = current, now


# --- the two front ends -----------------------------------------------------------------------


def run_batch(sampler: Sampler, view: View, sort: int, reverse: bool, iterations: int,
              delay: float, out=sys.stdout) -> None:  # fmt: skip
    """``top -b``: after each ``delay``, the table as plain text, ``iterations`` times."""
    sampler.read()
    for _ in range(iterations):
        time.sleep(delay)
        sampler.read()
        rows = table(view, sampler.grown, sampler.seconds, sort, reverse)
        stamp = time.strftime("%H:%M:%S")
        print(f"netsnoop top {stamp}  {view.name}, rates over {sampler.seconds:.1f}s", file=out)
        print("\n".join(render(view, rows, sort)), file=out)
        print(file=out, flush=True)


HELP_LINE = "q quit  v/tab view  </> sort  r reverse"


def run_live(
    screen: curses.window, sampler: Sampler, view_index: int, sort: int, delay: float
) -> None:
    """The live view: a new read every ``delay`` seconds, keys handled in between."""
    import curses

    curses.curs_set(0)
    screen.timeout(100)
    sorts = [view.default_sort for view in VIEWS]
    sorts[view_index] = sort
    reverse = False
    status = ""
    next_read = 0.0
    while True:
        now = time.monotonic()
        if now >= next_read:
            try:
                sampler.read()
                status = ""
            except FetchError as error:
                status = str(error)
            next_read = now + delay
        view = VIEWS[view_index]
        sort = sorts[view_index]
        height, width = screen.getmaxyx()
        rows = table(view, sampler.grown, sampler.seconds, sort, reverse)
        lines = render(view, rows, sort, width - 1)
        title = f"netsnoop top: {view.name}  ({HELP_LINE})"
        screen.erase()
        screen.addnstr(0, 0, title, width - 1)
        if status:
            screen.addnstr(1, 0, status, width - 1)
        screen.addnstr(2, 0, lines[0].ljust(width - 1), width - 1, curses.A_REVERSE)
        for y, line in enumerate(lines[1 : max(0, height - 3) + 1], start=3):
            screen.addnstr(y, 0, line, width - 1)
        screen.refresh()
        key = screen.getch()
        if key in (ord("q"), ord("Q")):
            return
        if key in (ord("v"), ord("\t")):
            view_index = (view_index + 1) % len(VIEWS)
        elif key in (ord(">"), curses.KEY_RIGHT):
            sorts[view_index] = (sort + 1) % len(view.columns)
        elif key in (ord("<"), curses.KEY_LEFT):
            sorts[view_index] = (sort - 1) % len(view.columns)
        elif key == ord("r"):
            reverse = not reverse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netsnoop-exporter top",
        description="Live rates per process and per port, read from a running exporter.",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"metrics URL (default {DEFAULT_URL})")
    parser.add_argument("--once", action="store_true", help="print one table and exit (= -n 1)")
    parser.add_argument(
        "-n",
        dest="iterations",
        type=int,
        default=0,
        help="batch mode: print N tables as plain text, then exit",
    )
    parser.add_argument(
        "-d", "--delay", type=float, default=1.0, help="seconds between reads (default 1)"
    )
    parser.add_argument("--view", choices=[view.name for view in VIEWS], default="processes")
    parser.add_argument(
        "--sort", default="", help="column to sort by, e.g. SENT or REFUSED/s (default per view)"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="HTTP timeout in seconds")
    parser.add_argument(
        "--tls.ca-file",
        dest="tls_ca_file",
        default="",
        help="CA certificate that signed the exporter's certificate",
    )
    parser.add_argument(
        "--tls.cert-file",
        dest="tls_cert_file",
        default="",
        help="client certificate, for client_auth_type",
    )
    parser.add_argument(
        "--tls.key-file", dest="tls_key_file", default="", help="the client certificate's key"
    )
    parser.add_argument(
        "--tls.insecure-skip-verify",
        dest="tls_insecure_skip_verify",
        action="store_true",
        help="do not verify the server's certificate",
    )
    parser.add_argument("--basic-auth.username", dest="basic_auth_username", default="")
    parser.add_argument(
        "--basic-auth.password-file",
        dest="basic_auth_password_file",
        default="",
        help="file holding the basic auth password",
    )
    return parser


def sort_index(view: View, name: str) -> int | None:
    if not name:
        return view.default_sort
    wanted = name.upper().removesuffix("/S")
    for index, column in enumerate(view.columns):
        if column_title(column).upper().removesuffix("/S") == wanted:
            return index
    return None


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    view_index = next(i for i, view in enumerate(VIEWS) if view.name == args.view)
    view = VIEWS[view_index]
    sort = sort_index(view, args.sort)
    if sort is None:
        titles = ", ".join(column_title(column) for column in view.columns)
        parser.error(f"--sort {args.sort!r}: the {view.name} view has {titles}")
    if args.delay <= 0 or args.iterations < 0:
        parser.error("-d must be above 0 and -n at least 0")
    try:
        sampler = Sampler(make_fetcher(args))
        iterations = 1 if args.once else args.iterations
        if iterations:
            run_batch(sampler, view, sort, False, iterations, args.delay)
            return 0
        if not sys.stdout.isatty():
            parser.error("the live view needs a terminal; use --once or -n N for plain text")
        sampler.read()  # fail fast on a wrong URL, before the screen is taken over
        import curses
        import locale

        locale.setlocale(locale.LC_ALL, "")  # curses draws UTF-8 comms right only with it
        curses.wrapper(run_live, sampler, view_index, sort, args.delay)
    except (FetchError, OSError, ssl.SSLError) as error:
        print(f"netsnoop-exporter top: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
