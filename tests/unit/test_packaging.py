"""pyproject.toml lists the packages a wheel ships by hand (bpf/ and config/ are mapped into
the package): a subpackage added under exporter/ and not listed would import from a source
tree and be missing from every install."""

from __future__ import annotations

import tomllib

from tests.helpers import REPO


def test_every_exporter_subpackage_is_packaged():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    in_tree = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "exporter").rglob("__init__.py")
    }
    mapped = set(setuptools["package-dir"]) - {"exporter"}
    assert set(setuptools["packages"]) == in_tree | mapped
