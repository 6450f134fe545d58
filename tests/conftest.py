from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ExporterProcess, bpf_unavailable_reason

_BPF_REASON = bpf_unavailable_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``root`` need root and BPF; elsewhere they skip with the reason."""
    if _BPF_REASON is None:
        return
    skip = pytest.mark.skip(reason=_BPF_REASON)
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    """One real exporter per test module, with the bundled default config."""
    process = ExporterProcess(None, tmp_path_factory.mktemp("exporter"))
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bin")
