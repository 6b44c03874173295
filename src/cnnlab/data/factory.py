"""The one place that chooses how a split becomes batches: in memory, or through a DataLoader.

A split held as one uint8 tensor (MNIST-like datasets) is batched by `InMemoryBatches`: gather
by index, normalise and augment the whole batch at once. A split read file by file (an image
folder) goes through `LoaderBatches`. Both satisfy `Batches`, so the training loop, evaluation
and export never ask which one they have.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol

import torch

from cnnlab.config import TrainConfig, input_normalisation
from cnnlab.data.batches import Augment, InMemoryBatches
from cnnlab.data.loader import LoaderBatches
from cnnlab.data.split import SplitView, stratified_split, validation_size
from cnnlab.errors import ConfigError


class Batches(Protocol):
    """An iterable of normalised (x, y) batches over one split (one rank's shard of it)."""

    batch_size: int
    rank: int
    world_size: int

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    @property
    def num_samples(self) -> int: ...


def is_in_memory(dataset) -> bool:
    """Whether a loaded split holds all its images as one uint8 tensor."""
    return bool(getattr(dataset, "in_memory", False))


def raw_images(dataset, n: int | None = None) -> torch.Tensor:
    """The first n (or all) images of a split as uint8 (N, C, H, W)."""
    n = len(dataset) if n is None else min(n, len(dataset))
    if is_in_memory(dataset):
        return dataset.images[:n]
    return torch.stack([dataset.load_uint8(i) for i in range(n)])


def raw_image(dataset, i: int) -> torch.Tensor:
    """Image i of a split as uint8 (C, H, W), as the user sees it (not normalised)."""
    return dataset.images[i] if is_in_memory(dataset) else dataset.load_uint8(i)


def make_batches(
    dataset,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    subset: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    augment: Augment | None = None,
    channels_last: bool = False,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
    even_shards: bool = True,
) -> Batches:
    """Batches of the first `subset` (or all) images of a loaded split.

    Args:
        dataset: a split from `cnnlab.data.datasets.load_dataset`.
        batch_size: images per batch (per process when distributed).
        mean, std: per-channel normalisation of inputs in [0, 1].
        subset: the first N images only.
        shuffle, seed: a new permutation each epoch, seeded by (seed, epoch).
        augment: batched random jitter (training), or None.
        channels_last: NHWC tensors (faster convolutions on CPUs).
        device: where batches are produced.
        rank, world_size, even_shards: this process's shard (see InMemoryBatches).
    """
    common = dict(
        shuffle=shuffle, seed=seed, augment=augment, channels_last=channels_last, device=device
    )
    common.update(rank=rank, world_size=world_size, even_shards=even_shards)
    if is_in_memory(dataset):
        n = subset or len(dataset)
        return InMemoryBatches(dataset.images[:n], dataset.targets[:n], batch_size, mean, std, **common)
    return LoaderBatches(dataset, batch_size, mean, std, subset=subset, **common)


class Splits(NamedTuple):
    """The batches of a training run: this rank's shard of each split."""

    train: Batches
    val: Batches | None  # None without a validation split
    test: Batches
    info: object  # the DatasetInfo


def _train_and_val(config: TrainConfig, train_set):
    """The training images (the first train_subset) and the held-out validation images."""
    n = min(len(train_set), config.train_subset or len(train_set))
    if n < len(train_set):
        train_set = SplitView(train_set, torch.arange(n), "train")
    if not config.val_split:
        return train_set, None
    size = validation_size(config.val_split, n)
    train_idx, val_idx = stratified_split(train_set.targets, size, config.seed)
    return SplitView(train_set, train_idx, "train"), SplitView(train_set, val_idx, "val")


def _check_batch_size(config: TrainConfig, images: int, world_size: int) -> None:
    if config.batch_size % world_size:
        low = config.batch_size // world_size * world_size
        raise ConfigError(
            f"--batch-size {config.batch_size} is the global batch and must split evenly among "
            f"{world_size} processes: use {max(low, world_size)} or {low + world_size}"
        )
    if config.batch_size > images:
        raise ConfigError(
            f"--batch-size {config.batch_size} is more than the {images} training images; "
            f"use at most {images} (or a larger --train-subset)"
        )


def folder_options(config: TrainConfig, progress=None) -> dict:
    """The image-folder options of a config (`--image-size`, `--channels`); none for other datasets."""
    from cnnlab.data.datasets import IMAGEFOLDER_PREFIX

    pairs = (("image_size", config.image_size), ("channels", config.channels))
    given = {k: v for k, v in pairs if v is not None}
    if not config.dataset.startswith(IMAGEFOLDER_PREFIX):
        if given:
            flags = " and ".join("--" + k.replace("_", "-") for k in given)
            raise ConfigError(f"{flags} apply to image folders only, not to {config.dataset}")
        return {}
    return {**given, "progress": progress} if progress else given


def load_batches(
    config: TrainConfig, device: torch.device, rank: int = 0, world_size: int = 1, progress=None
) -> Splits:
    """The train, validation and test batches of a config: this rank's shard of each.

    `progress(split, decoded, total)`, when given, follows an image folder's one decoding pass.
    """
    from cnnlab.data.datasets import load_dataset

    def options(split: str) -> dict:
        return folder_options(config, progress and (lambda done, total: progress(split, done, total)))

    train_set = load_dataset(config.dataset, "train", config.data_root, **options("train"))
    train_set, val_set = _train_and_val(config, train_set)
    test_set = load_dataset(config.dataset, "test", config.data_root, **options("test"))
    info = train_set.info
    mean, std = input_normalisation(config, info)
    _check_batch_size(config, len(train_set), world_size)
    common = dict(channels_last=config.channels_last, device=device, rank=rank, world_size=world_size)
    augment = Augment(rotate=config.rotate, scale=config.scale) if config.augment else None
    per_process = config.batch_size // world_size
    train = make_batches(
        train_set, per_process, mean, std, shuffle=True, seed=config.seed, augment=augment, **common
    )
    if train.num_samples < 1:
        raise ConfigError(
            f"{world_size} processes need at least {world_size} training images; raise --train-subset"
        )
    evaluation = dict(mean=mean, std=std, even_shards=False, **common)
    val = make_batches(val_set, 1000, **evaluation) if val_set is not None else None
    test = make_batches(test_set, 1000, subset=config.test_subset, **evaluation)
    return Splits(train, val, test, info)


def first_images(batches: Batches, n: int) -> torch.Tensor:
    """The first `n` (or all) images of epoch 0 of `batches`, as one tensor."""
    batches.set_epoch(0)
    taken, count = [], 0
    for x, _ in batches:
        taken.append(x)
        count += len(x)
        if count >= n:
            break
    return torch.cat(taken)[:n]
