"""What a dataset is (`DatasetInfo`) and a whole split held in memory (`ImageDataset`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from cnnlab.data.sources import Resource
from cnnlab.errors import DatasetFormatError


@dataclass(frozen=True)
class DatasetInfo:
    """Everything cnnlab knows about a dataset before reading a byte of it."""

    name: str
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, of the train split in [0, 1]
    std: tuple[float, ...]
    style: str  # how a user's image is turned into an input: "digits" | "fit"
    folder: str = ""  # torchvision's folder name under the root: MNIST, FashionMNIST
    files: dict[str, tuple[Resource, ...]] = field(default_factory=dict)  # split -> its files
    sources: tuple = ()
    description: str = ""
    # reads a split from the verified files: (raw_dir, info, split) -> (uint8 images, labels)
    reader: Callable | None = None
    directory: str = ""  # where the files lie under the root, when not `folder/raw`
    where: str = ""  # one line: which files to put where, for the not-found message

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def resources(self) -> list[Resource]:
        """Every file of every split, each once."""
        return list(dict.fromkeys(res for split in self.files.values() for res in split))


class ImageDataset(Dataset):
    """A whole split in memory: `images` uint8 (N, C, H, W), `targets` int64 (N,)."""

    in_memory = True

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, info: DatasetInfo, split: str):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DatasetFormatError(f"{info.name}/{split}: images must be uint8 (N, C, H, W)")
        if len(images) != len(targets):
            raise DatasetFormatError(
                f"{info.name}/{split}: {len(images)} images but {len(targets)} labels"
            )
        self.images, self.targets, self.info, self.split = images, targets, info, split

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float().div_(255), int(self.targets[i])

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def class_counts(self) -> list[int]:
        return torch.bincount(self.targets, minlength=self.info.num_classes).tolist()
