"""Image folders are decoded once into memory (fast batches), or stream when over the budget."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.config import TrainConfig
from cnnlab.data import datasets
from cnnlab.data.batches import InMemoryBatches
from cnnlab.data.factory import load_batches, make_batches
from cnnlab.data.loader import LoaderBatches
from cnnlab.errors import ConfigError


def digits_folder(root, n: int = 6, classes=("a", "b", "c")):
    """n PNGs per class, each a different grey pattern at 20x24 (so fitting into squares matters)."""
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, (24, 20, 3)).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    return root


def test_a_folder_is_decoded_once_and_kept_in_memory(tmp_path):
    folder = digits_folder(tmp_path / "d")
    calls = []
    ds = datasets.load_dataset(f"imagefolder:{folder}", "train", progress=lambda *a: calls.append(a))
    assert ds.in_memory and ds.images.shape == (len(ds), 1, 28, 28) and ds.images.dtype == torch.uint8
    done = [d for d, _ in calls]
    assert calls[-1] == (len(ds), len(ds)) and done == sorted(set(done))  # rising, ends at the total
    for i in range(len(ds)):  # the kept images are exactly what decoding the files gives
        assert torch.equal(ds.images[i], ds._decode(i))
    assert isinstance(make_batches(ds, 4, (0.5,), (0.5,)), InMemoryBatches)


def test_over_the_budget_it_streams_and_says_so_with_the_same_batches(tmp_path):
    folder = digits_folder(tmp_path / "d")
    kept = datasets.load_dataset(f"imagefolder:{folder}", "test", image_size=16, channels=3)
    with pytest.warns(datasets.StreamingWarning, match="over the memory budget.*streaming"):
        streamed = datasets.load_dataset(
            f"imagefolder:{folder}", "test", image_size=16, channels=3, memory_budget=100
        )
    assert not streamed.in_memory and streamed.images is None
    fast, slow = (
        make_batches(kept, 2, (0.5,) * 3, (0.5,) * 3),
        make_batches(streamed, 2, (0.5,) * 3, (0.5,) * 3),
    )
    assert isinstance(slow, LoaderBatches) and isinstance(fast, InMemoryBatches)
    slow.workers = 0  # no worker processes in a test
    for (xf, yf), (xs, ys) in zip(fast, slow, strict=True):
        assert torch.allclose(xf, xs, atol=1e-6) and torch.equal(yf, ys)  # same up to rounding


def test_progress_is_called_about_a_hundred_times(tmp_path):
    folder = digits_folder(tmp_path / "d", n=100)  # 300 images: 240 train, 60 test
    calls = []
    ds = datasets.load_dataset(f"imagefolder:{folder}", "train", progress=lambda *a: calls.append(a))
    assert len(ds) == 240 and len(calls) == 240 // 2 and calls[-1] == (240, 240)


def test_training_config_passes_image_size_and_channels(tmp_path):
    folder = digits_folder(tmp_path / "d")
    config = TrainConfig(dataset=f"imagefolder:{folder}", image_size=20, channels=3, batch_size=4)
    seen = []
    splits = load_batches(config, torch.device("cpu"), progress=lambda *a: seen.append(a[0]))
    assert splits.info.image_shape == (3, 20, 20) and isinstance(splits.train, InMemoryBatches)
    assert set(seen) == {"train", "test"}
    x, _ = next(iter(splits.train))
    assert x.shape == (4, 3, 20, 20)


def test_image_size_on_a_registered_dataset_is_refused(fake_dataset):
    with pytest.raises(ConfigError, match="--image-size apply to image folders only"):
        load_batches(TrainConfig(dataset="fake", image_size=32), torch.device("cpu"))


def test_image_size_out_of_range_is_refused(tmp_path):
    folder = digits_folder(tmp_path / "d")
    with pytest.raises(ConfigError, match="image size must be 4..1024 pixels, not 2"):
        datasets.load_dataset(f"imagefolder:{folder}", image_size=2)


def test_data_info_takes_image_size_and_channels(tmp_path, capsys):
    import json

    folder = digits_folder(tmp_path / "d")
    args = [
        "data",
        "info",
        "--dataset",
        f"imagefolder:{folder}",
        "--image-size",
        "12",
        "--channels",
        "3",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the budget: no warning
        assert main([*args, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["image_shape"] == [3, 12, 12] and facts["splits"]["train"]["images"] > 0
