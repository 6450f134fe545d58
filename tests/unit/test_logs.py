from __future__ import annotations

import io
import json
import logging

import pytest

from exporter import logs
from tests.helpers import parse_log_line


@pytest.fixture
def logged():
    """What the configured root logger writes, and a restore of the test runner's handlers."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    logging.captureWarnings(False)


AWKWARD = 'listening on 127.0.0.1:1, comm "a=b"\\ \t\u2028é\n second line'


@pytest.mark.parametrize("log_format", logs.FORMATS)
def test_every_line_parses_with_the_traceback_in_one_field(logged, log_format):
    logs.configure("debug", log_format, logged)
    log = logging.getLogger("netsnoop.test")
    log.warning("%s", AWKWARD)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("collector %s failed", "x")
    log.debug("")
    lines = logged.getvalue().splitlines()
    assert len(lines) == 3, lines
    first, second, third = (parse_log_line(line, log_format) for line in lines)
    assert (first["level"], first["source"], first["msg"]) == ("warn", "netsnoop.test", AWKWARD)
    assert second["level"] == "error" and second["msg"] == "collector x failed"
    assert second["exc"].startswith("Traceback (most recent call last):")
    assert second["exc"].endswith("RuntimeError: boom")
    assert third["msg"] == "" and third["level"] == "debug"


def test_level_filters_and_formats_differ(logged):
    logs.configure("warn", "json", logged)
    logging.getLogger("netsnoop").info("hidden")
    logging.getLogger("netsnoop").error("shown")
    [line] = logged.getvalue().splitlines()
    assert json.loads(line)["msg"] == "shown"


def test_plain_values_stay_bare():
    assert logs.logfmt_value("127.0.0.1:19435") == "127.0.0.1:19435"
    assert logs.logfmt_value("a b") == '"a b"'
    assert logs.logfmt_value("") == '""'
