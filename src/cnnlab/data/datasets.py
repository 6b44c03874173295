"""Dataset registry: each dataset is a table (files, MD5s, classes, statistics, sources).

`load_dataset("mnist", "train")` returns an `ImageDataset`: the whole split in memory as one
uint8 tensor, which is also a `torch.utils.data.Dataset` yielding (float 1x28x28 in [0, 1],
int label), so the lesson's `DataLoader(train_set, batch_size=64)` works as written.
`imagefolder:PATH` is a user's folder of class subfolders, decoded once (see `imagefolder`).
The tables live in `catalog`, the readers of each format in `readers` and `cifar`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnlab.data import readers, sources
from cnnlab.data.catalog import (  # noqa: F401  (re-exported: the registry's public names)
    CIFAR10,
    DATASETS,
    EMNIST_DIGITS,
    EMNIST_LETTERS,
    FASHION_MNIST,
    KMNIST,
    MNIST,
    QMNIST,
)
from cnnlab.data.imagefolder import (  # noqa: F401  (re-exported)
    IMAGE_SUFFIXES,
    IMAGEFOLDER_PREFIX,
    MEMORY_BUDGET,
    ImageFolderDataset,
    StreamingWarning,
    walk_files,
)
from cnnlab.data.info import DatasetInfo, ImageDataset  # noqa: F401  (re-exported)
from cnnlab.errors import ConfigError

SPLITS = ("train", "test")


def list_datasets() -> list[str]:
    return [*DATASETS, IMAGEFOLDER_PREFIX + "PATH"]


def default_root() -> Path:
    """$CNNLAB_DATA, else ~/.cache/cnnlab."""
    env = os.environ.get("CNNLAB_DATA")
    return Path(env) if env else Path.home() / ".cache" / "cnnlab"


def get_dataset_info(name: str) -> DatasetInfo:
    """The registry entry of a named dataset (not image folders)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(list_datasets())}")
    return DATASETS[name]


def data_dir(info: DatasetInfo, root: str | os.PathLike) -> Path:
    """Where a dataset's files lie under a root: torchvision's `root/FOLDER/raw`, or its own."""
    return Path(root) / info.directory if info.directory else sources.raw_dir(root, info.folder)


def fetch_dataset(name: str, root: str | os.PathLike | None = None) -> sources.FetchResult:
    """Make sure the dataset's verified files are under the root; say which source served it."""
    info = get_dataset_info(name)
    root = Path(root) if root else default_root()
    return sources.fetch(
        info.folder, info.resources, root, info.sources, dest=data_dir(info, root), where=info.where
    )


_cache: dict[tuple[str, str, str], ImageDataset] = {}


def load_dataset(
    name: str, split: str = "train", root: str | os.PathLike | None = None, **folder_options
) -> Dataset:
    """Load a split into memory (once per process), fetching and verifying the files first.

    Args:
        name: a registered dataset (see `list_datasets()`) or `imagefolder:PATH`.
        split: "train" or "test".
        root: data root (default `$CNNLAB_DATA` or `~/.cache/cnnlab`).
        folder_options: for image folders: image_size, channels, test_fraction, seed,
            progress (called with (decoded, total)), memory_budget (bytes).
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose train or test")
    if name.startswith(IMAGEFOLDER_PREFIX):
        return ImageFolderDataset(name[len(IMAGEFOLDER_PREFIX) :], split, **folder_options)
    info = get_dataset_info(name)
    root = Path(root) if root else default_root()
    key = (name, str(root.resolve()), split)
    if key not in _cache:
        fetched = fetch_dataset(name, root)
        read = info.reader or readers.read_idx_split
        x, y = read(fetched.raw_dir, info, split)
        if x.ndim == 3:
            x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
        _cache[key] = ImageDataset(
            torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(np.asarray(y, dtype=np.int64)),
            info,
            split,
        )
    return _cache[key]


def clear_cache() -> None:
    _cache.clear()
