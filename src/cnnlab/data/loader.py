"""Batches of a lazily decoded dataset (image folders) through a torch DataLoader."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from cnnlab.data.batches import Augment, apply_augment, augment_seed
from cnnlab.errors import ConfigError


class LoaderBatches:
    """Batches of a lazily decoded dataset (image folders) through a DataLoader.

    Same interface and same normalisation/augmentation as InMemoryBatches; the order of epoch e
    is a permutation seeded by (seed, e), so resume stays exact here too. Shuffled batches come
    from a DistributedSampler (one process is a world of one), which gives rank r every
    world_size-th sample of that same permutation; `rank`, `world_size` and `even_shards` mean
    what they mean for InMemoryBatches.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        mean,
        std,
        *,
        shuffle=False,
        seed=0,
        augment: Augment | None = None,
        channels_last=False,
        device="cpu",
        subset: int | None = None,
        workers: int = 2,
        rank: int = 0,
        world_size: int = 1,
        even_shards: bool = True,
    ):
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside a world of {world_size} process(es)")
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.augment, self.channels_last, self.device = augment, channels_last, torch.device(device)
        self.n = min(len(dataset), subset) if subset else len(dataset)
        c = len(mean)
        self.mean = torch.tensor(mean).view(1, c, 1, 1) * 255
        self.std = torch.tensor(std).view(1, c, 1, 1) * 255
        self.targets = dataset.targets[: self.n]
        self.workers, self.epoch = workers, 0
        self.rank, self.world_size, self.even_shards = rank, world_size, even_shards

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _sampler(self):
        """The indices of this rank for the current epoch."""
        from torch.utils.data import DistributedSampler

        if self.shuffle:
            # DistributedSampler seeds randperm with seed + epoch: the same permutation as
            # InMemoryBatches, in one process or many
            sampler = DistributedSampler(
                _Uint8View(self.dataset, self.n),
                self.world_size,
                self.rank,
                shuffle=True,
                seed=self.seed * 1_000_003,
                drop_last=self.even_shards,
            )
            sampler.set_epoch(self.epoch)
            return sampler
        end = (self.n // self.world_size) * self.world_size if self.even_shards else self.n
        return range(self.rank, end, self.world_size)

    def _shard_size(self) -> int:
        """Samples this rank sees per epoch."""
        n, w = self.n, self.world_size
        return n // w if self.even_shards else len(range(self.rank, n, w))

    def __len__(self) -> int:
        return math.ceil(self._shard_size() / self.batch_size)

    @property
    def num_samples(self) -> int:
        return self._shard_size()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader

        loader = DataLoader(
            _Uint8View(self.dataset, self.n),
            batch_size=self.batch_size,
            sampler=self._sampler(),
            num_workers=self.workers,
            persistent_workers=False,
        )
        g = torch.Generator().manual_seed(augment_seed(self.seed, self.epoch, self.rank))
        for x, y in loader:
            x = x.float()  # (B, C, H, W) in 0..255
            if self.augment is not None:
                x = apply_augment(x, self.augment, g)
            x = (x - self.mean) / self.std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class _Uint8View:
    """A folder dataset seen as (uint8 image, label) pairs for the DataLoader."""

    def __init__(self, dataset, n: int | None = None):
        self.dataset = dataset
        self.n = len(dataset) if n is None else n  # the first n samples (a subset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.dataset.load_uint8(i), int(self.dataset.targets[i])
