"""pyproject.toml lists the packages a wheel ships by hand (bpf/ and config/ are mapped into
the package): a subpackage added under exporter/, or a BPF source in a new folder of bpf/, not
listed would work from a source tree and be missing from every install."""

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


def test_every_file_of_a_mapped_folder_is_package_data():
    """bpf/ and config/ hold only what the exporter reads, in subfolders too (bpf/watch/)."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        package: REPO / folder
        for package, folder in setuptools["package-dir"].items()
        if package != "exporter"
    }
    packaged = {
        path
        for package, folder in folders.items()
        for pattern in setuptools["package-data"].get(package, ())
        for path in folder.glob(pattern)
    }
    files = {path for folder in folders.values() for path in folder.rglob("*") if path.is_file()}
    assert sorted(files - packaged) == []
