"""Run folders and hostile images for the web tests.

The runs are trained once per test session (cached here, so the API tests and the live-server
tests share them), with metrics.json holding a measured test accuracy as `cnnlab train` writes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import torch

from cnnlab import io, runs
from cnnlab.cli import main as cli_main
from cnnlab.data import datasets
from cnnlab.data.datasets import load_dataset
from conftest import write_fake_dataset
from tiny_runs import make_run

_CACHE: dict[str, Path] = {}


def fake_web_run(tmp_path_factory, model: str = "cnn") -> Path:
    """A run on the fake bars dataset (seconds): for API mechanics, not for accuracy."""
    key = f"fake-{model}"
    if key not in _CACHE:
        base = tmp_path_factory.mktemp(key)
        info = write_fake_dataset(base / "data")
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(datasets.DATASETS, "fake", info)
            datasets.clear_cache()
            kwargs = {"width": 4} if model == "cnn" else {"hidden": [32]}
            out = make_run(base / "run", "fake", model, kwargs, epochs=2, root=base / "data")
            test = load_dataset("fake", "test", base / "data")
            _write_accuracy(out, test.images, test.targets)
        datasets.clear_cache()
        _CACHE[key] = out
    return _CACHE[key]


def mnist_web_run(tmp_path_factory, real_root) -> Path:
    """A real `cnnlab train` run: the `cnn` on the first 5000 MNIST training images for one
    epoch, tested on the first 2000 test images (93.5 % measured at writing; the tests ask
    for 90 %). Its metrics.json is what the model card reads."""
    if "mnist" not in _CACHE:
        out = tmp_path_factory.mktemp("mnist-web") / "mnist-cnn"
        threads = torch.get_num_threads()
        try:
            code = cli_main(
                [
                    "train",
                    "--model",
                    "cnn",
                    "--dataset",
                    "mnist",
                    "--root",
                    str(real_root),
                    "--epochs",
                    "1",
                    "--train-subset",
                    "5000",
                    "--test-subset",
                    "2000",
                    "--threads",
                    "1",
                    "--quiet",
                    "--out",
                    str(out),
                ]
            )
        finally:
            torch.set_num_threads(threads)
        assert code == 0, "cnnlab train failed"
        _CACHE["mnist"] = out
    return _CACHE["mnist"]


def _write_accuracy(run_dir: Path, images: torch.Tensor, targets: torch.Tensor) -> None:
    run = runs.load_run(run_dir)
    x = (images.float() / 255 - run.mean[0]) / run.std[0]
    with torch.no_grad():
        pred = torch.cat([run.model(b).argmax(1) for b in x.split(500)])
    acc = (pred == targets).float().mean().item()
    io.write_json(run_dir / runs.METRICS, [{"epoch": 1, "test_acc": acc}])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def forged_png(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header claims width x height grey pixels (a pixel bomb: decoding
    it would need width * height bytes). The header's CRC is right, so only the size is wrong."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    idat = zlib.compress(b"\0" * (width + 1) * 4)  # a few rows; a decoder would ask for more
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
