"""Where the bundled BPF sources and config are: at the top of a source tree (bpf/, config/),
or inside the installed package (exporter/bpf, exporter/defaults; see pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _bundled(installed: str, source: str) -> Path:
    inside = _PACKAGE / installed
    return inside if inside.is_dir() else _PACKAGE.parent / source


def bpf_dir() -> Path:
    return _bundled("bpf", "bpf")


def config_dir() -> Path:
    return _bundled("defaults", "config")
