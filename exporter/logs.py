"""Log lines a log pipeline can parse: logfmt or JSON, one event per line.

Like node_exporter: an RFC 3339 UTC timestamp, a lower-case level, the logger as ``source``;
a traceback is one more field (``exc``), quoted and escaped, never extra lines.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("logfmt", "json")
_BARE = re.compile(r"[!#-<>-\[\]-~]+")  # printable ASCII but for space, ", = and a backslash


def level_name(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    return "info" if levelno >= logging.INFO else "debug"


def fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, str]:
    timestamp = datetime.fromtimestamp(record.created, UTC)
    event = {
        "ts": timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level_name(record.levelno),
        "source": record.name,
        "msg": record.getMessage(),
    }
    if record.exc_info:
        event["exc"] = formatter.formatException(record.exc_info)
    return event


def logfmt_value(value: str) -> str:
    """Bare when it can be, else double-quoted with JSON escapes, non-ASCII escaped too: some
    of it (U+2028, U+0085) counts as a line break to line-splitting readers."""
    if _BARE.fullmatch(value):
        return value
    return json.dumps(value)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={logfmt_value(v)}" for k, v in fields(record, self).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record, self))


def stderr_copy() -> TextIO:
    """Standard error through a descriptor of its own: while bcc's C output on descriptor 2 is
    caught (kernel/bpf.py), the log still reaches the real stderr."""
    try:
        descriptor = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no real descriptor (embedded, captured)
        return sys.stderr
    return open(descriptor, "w", buffering=1, encoding="utf-8", errors="backslashreplace")


def configure(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Sends every logger's records to stderr in ``log_format``, from ``level`` up."""
    handler = logging.StreamHandler(stream or stderr_copy())
    handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    logging.captureWarnings(True)  # Python warnings too, as log lines of source=py.warnings
