"""Batches of a lazily decoded dataset (image folders) through a torch DataLoader."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from cnnlab.data.batches import Augment, augment_batch, shift_batch


class LoaderBatches:
    """Batches of a lazily decoded dataset (image folders) through a DataLoader.

    Same interface and same normalisation/augmentation as InMemoryBatches; the order of epoch e
    is a permutation seeded by (seed, e), so resume stays exact here too.
    """

    def __init__(self, dataset, batch_size: int, mean, std, *, shuffle=False, seed=0,
                 augment: Augment | None = None, channels_last=False, device="cpu",
                 subset: int | None = None, workers: int = 2):  # fmt: skip
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.augment, self.channels_last, self.device = augment, channels_last, torch.device(device)
        self.n = min(len(dataset), subset) if subset else len(dataset)
        c = len(mean)
        self.mean = torch.tensor(mean).view(1, c, 1, 1) * 255
        self.std = torch.tensor(std).view(1, c, 1, 1) * 255
        self.targets = dataset.targets[: self.n]
        self.workers, self.epoch = workers, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    @property
    def num_samples(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader

        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        loader = DataLoader(_Uint8View(self.dataset), batch_size=self.batch_size, sampler=order,
                            num_workers=self.workers, persistent_workers=False)  # fmt: skip
        g = torch.Generator().manual_seed(self.seed * 7_000_003 + self.epoch + 1)
        for x, y in loader:
            x = x.float()  # (B, C, H, W) in 0..255
            if self.augment is not None:
                a = self.augment
                simple = a.rotate == 0 and a.scale == 0 and float(a.translate).is_integer()
                x = shift_batch(x, int(a.translate), g) if simple else augment_batch(x, a, g)
            x = (x - self.mean) / self.std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class _Uint8View:
    """A folder dataset seen as (uint8 image, label) pairs for the DataLoader."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset.load_uint8(i), int(self.dataset.targets[i])
