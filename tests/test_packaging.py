"""Packaging basics: the licence ships, py.typed ships, the extras are declared."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_declares_licence_typing_and_extras():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    meta = project["project"]
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert "cnnlab authors" in (REPO / "LICENSE").read_text()
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])
    assert "Typing :: Typed" in meta["classifiers"] and "Documentation" in meta["urls"]
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["cnnlab"]
    assert (REPO / "src" / "cnnlab" / "py.typed").is_file()
    extras = meta["optional-dependencies"]
    assert extras["tensorboard"] == ["tensorboard>=2.16"]
    assert any("tensorboard" in d and d.startswith("cnnlab[") for d in extras["dev"])
