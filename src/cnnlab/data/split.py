"""A validation split: training images held out, seeded and stratified by class.

Settings are chosen on the validation images; the test set is looked at once, at the end.
`SplitView` shows a subset of a loaded split through the same interface, in memory (one
uint8 tensor) or file by file (an image folder).
"""

from __future__ import annotations

import torch

from cnnlab.errors import ConfigError

# an offset so the split's generator never replays the training seed's stream
SPLIT_SEED_OFFSET = 7919


class SplitView:
    """The images of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices: torch.Tensor, split: str):
        self.dataset, self.indices, self.split = dataset, indices, split
        self.info = dataset.info
        self.targets = dataset.targets[indices]
        self.in_memory = bool(getattr(dataset, "in_memory", False))
        if self.in_memory:
            self.images = dataset.images[indices]

    def __len__(self) -> int:
        return len(self.indices)

    def load_uint8(self, i: int) -> torch.Tensor:
        return self.dataset.load_uint8(int(self.indices[i]))


def validation_size(val_split: float, n: int) -> int:
    """Images to hold out: val_split itself when >= 1, else that fraction of n."""
    size = int(val_split) if val_split >= 1 else round(val_split * n)
    if not 1 <= size < n:
        raise ConfigError(
            f"--val-split {val_split:g} holds out {size} of {n} training images; give a count "
            f"between 1 and {n - 1} or a fraction between 0 and 1, e.g. 0.1"
        )
    return size


def stratified_split(targets: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): `size` images held out in proportion to each class.

    Each class gives floor(size * share) images, and the remainder goes to the classes with the
    largest fractional parts; within a class the images are drawn by a seeded permutation. The
    training indices keep their original order.
    """
    g = torch.Generator().manual_seed(seed + SPLIT_SEED_OFFSET)
    counts = torch.bincount(targets)
    exact = counts.double() * size / len(targets)
    quota = exact.floor().long()
    remainder = size - int(quota.sum())
    quota[(exact - quota).argsort(descending=True)[:remainder]] += 1
    held = []
    for cls in counts.nonzero().flatten().tolist():
        members = (targets == cls).nonzero().flatten()
        held.append(members[torch.randperm(len(members), generator=g)[: int(quota[cls])]])
    val = torch.cat(held).sort().values
    keep = torch.ones(len(targets), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val
