from __future__ import annotations

import pytest

from exporter.config import Config, ConfigError, default_config_path, load_config, parse_config


def test_bundled_config_equals_the_defaults():
    assert load_config(default_config_path()) == Config()


def test_empty_file_is_all_defaults():
    assert parse_config("", "x.yaml") == Config()


def test_values_are_read():
    config = parse_config(
        "collectors:\n  tcp_connections:\n    map_size: 1024\nlabels:\n  comm: false\n", "x.yaml"
    )
    assert config.collectors.tcp_connections.map_size == 1024
    assert config.labels.comm is False and config.labels.uid is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "collectors:\n  tcp_connections:\n    map_size: 8\n",
            "collectors.tcp_connections.map_size: Input should be greater than or equal to 16",
        ),
        (
            "collectors:\n  tcp_connections:\n    map_size: '100'\n",
            "x.yaml: collectors.tcp_connections.map_size: Input should be a valid integer",
        ),
        ("labels:\n  comm: 1\n", "x.yaml: labels.comm: Input should be a valid boolean"),
        ("labels:\n  pod: true\n", "x.yaml: labels.pod: unknown key"),
        ("- a\n- b\n", "x.yaml: (top level): expected a mapping, got list"),
        ("a: [\n", "x.yaml: line 2:"),
        ("labels: {comm: 1, uid: 2}\n", "(and 1 more)"),
        (
            "tracepoints:\n  tcp_connections.tcp_send_reset: 'tcp send reset'\n",
            "tracepoints.tcp_connections.tcp_send_reset: String should match pattern",
        ),
    ],
)
def test_errors_name_file_key_and_reason(text, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "x.yaml")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unreadable_file(tmp_path):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_event_log_path_is_checked_with_the_config(tmp_path):
    missing = tmp_path / "nowhere" / "events.jsonl"
    with pytest.raises(ConfigError) as error:
        parse_config(f"event_log:\n  path: {missing}\n", "n.yaml")
    assert str(error.value) == (
        f"n.yaml: event_log.path: Value error, directory {missing.parent} does not exist"
    )
    with pytest.raises(ConfigError, match="is a directory"):
        parse_config(f"event_log:\n  path: {tmp_path}\n", "n.yaml")
    good = tmp_path / "events.jsonl"
    assert parse_config(f"event_log:\n  path: {good}\n", "n.yaml").event_log.path == str(good)
