"""Config fuzzing: any YAML gives a loaded config or one line naming the problem, never a
traceback (the CLI turns a ConfigError into that line and exit status 2)."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Config, ConfigError, parse_config, parse_model
from exporter.outputs.webconfig import WebConfig

KEYS = [
    "collectors", "tcp_connections", "enabled", "map_size", "labels", "comm", "uid",
    "cardinality", "series_per_metric", "idle_seconds", "ports", "keep", "fold_ephemeral",
    "ephemeral_range", "fold_refused_inbound", "kubernetes", "tls_server_config", "cert_file",
    "basic_auth_users", "client_auth_type", "min_version", "http_server_config", "headers",
]  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["1-2", "70000", "8000-7000", "TLS13", "$2b$10$" + "a" * 53])
)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


def assert_one_line(text: str, model: type) -> None:
    try:
        loaded = parse_model(text, "fuzz.yaml", model)
    except ConfigError as error:
        message = str(error)
        assert message.startswith("fuzz.yaml: ") and "\n" not in message, message
        return
    assert isinstance(loaded, model)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_yaml_document_loads_or_fails_in_one_line(document: object):
    text = yaml.safe_dump(document)
    assert_one_line(text, Config)
    assert_one_line(text, WebConfig)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_loads_or_fails_in_one_line(text: str):
    assert_one_line(text, Config)


def test_deep_nesting_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"^fuzz\.yaml: \(top level\): nested too deeply$"):
        parse_config("a: " + "[" * 5000 + "]" * 5000, "fuzz.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cardinality:\n  idle_seconds: " + "9" * 4301 + "\n", "line 2: idle_seconds: integer"),
        ("ports:\n  keep: [" + "1" * 4301 + "]\n", "line 2: integer too large"),
        # 3,990 hex digits pass int() but not the 4,300-digit limit of str(): refused too
        ("cardinality: {idle_seconds: 0x" + "f" * 3990 + "}\n", "idle_seconds: integer too"),
        ("cardinality: {series_per_metric: 18446744073709551616}\n", "integer too large"),
        ("cardinality: {idle_seconds: 5, idle_seconds: 6}\n", "idle_seconds: duplicate key"),
        ("collectors: {}\ncollectors: {}\n", "line 2: collectors: duplicate key"),
    ],
)
def test_huge_integers_and_duplicate_keys_are_one_line_errors(text: str, message: str):
    for model in (Config, WebConfig):
        with pytest.raises(ConfigError) as raised:
            parse_model(text, "fuzz.yaml", model)
        assert str(raised.value).startswith("fuzz.yaml: ") and message in str(raised.value)
        assert "\n" not in str(raised.value)
