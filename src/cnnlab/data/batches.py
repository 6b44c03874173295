"""Fast in-memory batches: the whole split is one uint8 tensor; a batch is an index gather.

torchvision's MNIST turns every sample into a PIL image and back, which costs more than a small
model's step. Here a batch is `images[idx]`, normalised and (optionally) augmented as a whole:
no per-sample Python, no PIL. The permutation of epoch e comes from (seed, e), so any epoch can
be replayed (resume) and every process of a distributed job agrees on it (sharding).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError


@dataclass(frozen=True)
class Augment:
    """Random affine jitter applied to a whole batch; each default carries its reason."""

    translate: float = 2.0  # pixels; MNIST digits are centred by mass, so +-2 px is realistic
    rotate: float = 0.0  # degrees; +-10 helps the long `best` runs, costs a little at 1 epoch
    scale: float = 0.0  # relative; 0.1 means x0.9..x1.1

    def __post_init__(self):
        if min(self.translate, self.rotate, self.scale) < 0:
            raise ConfigError("augmentation amounts must be >= 0")


def augment_batch(x: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Apply a random affine transform per sample: x is float (B, C, H, W), returned same shape."""
    b, _, h, w = x.shape
    dev = x.device

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * 2 - 1).mul_(limit).to(dev)

    angle = uniform(math.radians(aug.rotate))
    scale = 1 + uniform(aug.scale)
    tx = uniform(aug.translate * 2 / w)  # affine_grid works in [-1, 1] units
    ty = uniform(aug.translate * 2 / h)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(
        x.dtype
    )  # (B, 2, 3)
    grid = affine_grid(theta, h, w)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """F.affine_grid(theta, (B, C, h, w), align_corners=False) as one broadcast sum.

    F.affine_grid builds its base grid and runs a batched matmul on every call, which at MNIST
    size costs more than the warp itself (timed in benchmarks/BENCHMARKS.md); same coordinates.
    """
    xs = torch.arange(w, dtype=theta.dtype, device=theta.device).mul_(2).add_(1).div_(w).sub_(1)
    ys = torch.arange(h, dtype=theta.dtype, device=theta.device).mul_(2).add_(1).div_(h).sub_(1)
    t = theta[:, :, :, None, None]  # (B, 2, 3, 1, 1): each coefficient broadcast over the map
    grid = t[:, :, 0] * xs + t[:, :, 1] * ys[:, None] + t[:, :, 2]  # (B, 2, h, w)
    return grid.permute(0, 2, 3, 1)  # (B, h, w, 2), x then y, as grid_sample reads it


def shift_batch(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each sample by whole pixels (up to max_shift) with zero fill: cheap and exact."""
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None]  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)[None]  # (B, W)
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def apply_augment(x: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """x float (B, C, H, W) in 0..255 -> the augmented batch: whole-pixel shifts when that is
    all `aug` asks (exact and cheap), else a per-sample affine warp."""
    if aug.rotate == 0 and aug.scale == 0 and float(aug.translate).is_integer():
        return shift_batch(x, int(aug.translate), generator)
    return augment_batch(x, aug, generator)


def augment_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """Seed of an epoch's augmentation draws; each rank of a job draws its own jitter."""
    return seed * 7_000_003 + epoch + 1 + rank * 1_000_000_007


class InMemoryBatches:
    """Iterate (x, y) batches over uint8 images held in memory.

    Args:
        images: uint8 (N, C, H, W), on CPU or already on the training device.
        targets: int64 (N,).
        batch_size: images per batch (per process when distributed).
        mean, std: per-channel normalisation of x in [0, 1].
        shuffle: a new seeded permutation each epoch (`set_epoch`).
        augment: batched random jitter, or None.
        drop_last: drop the final short batch.
        channels_last: return x in channels_last memory format (faster convs on CPU).
        device: where batches are produced (images are moved there once).
        rank, world_size: shard each epoch's permutation across processes: rank r takes
            every world_size-th sample of it, starting at r.
        even_shards: drop the last N % world_size samples of the permutation so every rank
            has as many batches (training: each step is a collective); False gives every
            sample to exactly one rank (evaluation, where the sums are all-reduced once).
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
        *,
        shuffle: bool = False,
        seed: int = 0,
        augment: Augment | None = None,
        drop_last: bool = False,
        channels_last: bool = False,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        even_shards: bool = True,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ConfigError("InMemoryBatches needs uint8 images of shape (N, C, H, W)")
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, not {batch_size}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside a world of {world_size} process(es)")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.targets = targets.to(self.device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.augment, self.drop_last, self.channels_last = augment, drop_last, channels_last
        self.rank, self.world_size, self.even_shards = rank, world_size, even_shards
        c = images.shape[1]
        self.mean = torch.tensor(mean, device=self.device).view(1, c, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, c, 1, 1) * 255
        # x * scale + shift == (x - mean) / std, applied in place: two passes instead of four
        self.scale, self.shift = 1 / self.std, -self.mean / self.std
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of this epoch (deterministic from seed and epoch)."""
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.targets)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:  # every rank takes a strided slice of the same permutation
            if self.even_shards:
                order = order[: (n // self.world_size) * self.world_size]
            order = order[self.rank :: self.world_size]
        return order.to(self.device)

    def _shard_size(self) -> int:
        """Samples this rank sees per epoch."""
        n, w = len(self.targets), self.world_size
        return n // w if self.even_shards else len(range(self.rank, n, w))

    def __len__(self) -> int:
        n = self._shard_size()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        n = self._shard_size()
        return len(self) * self.batch_size if self.drop_last else n

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._indices()
        g = torch.Generator().manual_seed(augment_seed(self.seed, self.epoch, self.rank))
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            # index_select is ~4x faster than images[idx] (advanced indexing) on CPU
            x = self.images.index_select(0, idx).float()  # (B, C, H, W) in 0..255
            if self.augment is not None:  # before normalising, so the fill is black (0)
                x = apply_augment(x, self.augment, g)
            x = x.mul_(self.scale).add_(self.shift)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.targets.index_select(0, idx)
