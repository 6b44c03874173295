"""A user's image folder: class subfolders of PNG/JPEG files, decoded once into memory.

Every image is decoded when the split is built, so a bad file is refused, named, before any
training. The decoded images are kept as one uint8 tensor (the fast in-memory batches), unless
the split is larger than `memory_budget` bytes: then it streams from disk every epoch through
the DataLoader path, and a `StreamingWarning` says so.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnlab.data import images
from cnnlab.data.info import DatasetInfo
from cnnlab.errors import ConfigError, DatasetFormatError, ImageInputError

IMAGEFOLDER_PREFIX = "imagefolder:"
MEMORY_BUDGET = 2 << 30  # bytes of decoded uint8 one split may keep in memory (2 GiB)
MIN_SIDE, MAX_SIDE = 4, 1024  # smaller is not an image; larger outgrows any model here
Progress = Callable[[int, int], None]  # (images decoded so far, images in the split)
PROGRESS_CALLS = 100  # about this many per split, so a job's progress stream stays small


class StreamingWarning(UserWarning):
    """An image folder is too large to keep in memory and streams from disk every epoch."""


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def walk_files(folder: str | os.PathLike) -> list[Path]:
    """Every regular file under a folder, in sorted order, skipping hidden names.

    Walks with an explicit stack, so any depth works (`Path.rglob` and `os.walk` recurse in
    Python 3.11); symlinked folders are not followed and unreadable ones are passed over, as
    `rglob` does.
    """
    found: list[Path] = []
    stack = [Path(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                listed = [e for e in entries if not e.name.startswith(".")]
        except OSError:
            continue
        for entry in listed:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(current / entry.name)
                elif entry.is_file():
                    found.append(current / entry.name)
            except OSError:
                continue
    return sorted(found)


def _class_folders(base: Path) -> list[str]:
    """The class subfolder names of a split folder, sorted (hidden ones skipped)."""
    return sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))


def _class_files(folder: Path) -> list[Path]:
    """The image files of one class folder; an empty class folder is refused."""
    files = [p for p in walk_files(folder) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ConfigError(
            f"{folder}: class folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "add some or remove the folder"
        )
    return files


class ImageFolderDataset(Dataset):
    """A user's folder: `PATH/<class>/*.png`, or `PATH/train/<class>` and `PATH/test/<class>`.

    Without train/ and test/ subfolders, a seeded split holds out `test_fraction` of each class.
    With them, classes are matched by name: test/ uses train/'s class list (a test class that
    train/ lacks is refused). Images are converted to `channels` and fitted into `image_size`
    squares. Every image is decoded once, when the split is built (`progress(done, total)` is
    called about a hundred times as it goes): a bad file is refused, named, before any
    training, and the decoded split is kept in memory as `images` (`in_memory` is then True)
    when it fits in `memory_budget` bytes; a larger split is decoded again from disk every
    epoch, with a `StreamingWarning`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        image_size: int = 28,
        channels: int = 1,
        test_fraction: float = 0.2,
        seed: int = 0,
        progress: Progress | None = None,
        memory_budget: int = MEMORY_BUDGET,
    ):
        if not os.fspath(path).strip():
            raise ConfigError("imagefolder: needs a path, e.g. imagefolder:data/digits")
        root = Path(path).expanduser()
        if not root.is_dir():
            raise ConfigError(f"image folder {root} not found (expected class subfolders)")
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, not {channels}")
        if not MIN_SIDE <= image_size <= MAX_SIDE:
            raise ConfigError(f"image size must be {MIN_SIDE}..{MAX_SIDE} pixels, not {image_size}")
        has_splits = (root / "train").is_dir() and (root / "test").is_dir()
        class_root = root / "train" if has_splits else root
        classes = _class_folders(class_root)
        if len(classes) < 2:
            raise ConfigError(f"{class_root}: needs at least 2 class subfolders, found {len(classes)}")
        self.split, self.image_size, self.channels = split, image_size, channels
        if has_splits:
            self.samples = _split_samples(root / split, classes)
        else:
            self.samples = _seeded_samples(root, classes, split, test_fraction, seed)
        self.targets = torch.tensor([label for _, label in self.samples])
        self.info = DatasetInfo(
            name=f"{IMAGEFOLDER_PREFIX}{root}",
            classes=tuple(classes),
            image_shape=(channels, image_size, image_size),
            mean=(0.5,) * channels,
            std=(0.5,) * channels,
            style="fit",
            description=f"image folder {root}",
        )
        self.in_memory, self.images = False, None
        self._decode_all(progress, memory_budget)

    def _decode_all(self, progress: Progress | None, memory_budget: int) -> None:
        """Decode every image once: keep them when they fit; refuse the folder if any fails."""
        n, (c, h, w) = len(self.samples), self.info.image_shape
        nbytes = n * c * h * w
        keep = torch.empty((n, c, h, w), dtype=torch.uint8) if nbytes <= memory_budget else None
        bad, step = [], max(1, n // PROGRESS_CALLS)
        for i in range(n):
            try:
                image = self._decode(i)
            except DatasetFormatError as e:
                bad.append(str(e))
            else:
                if keep is not None:
                    keep[i] = image
            if progress is not None and ((i + 1) % step == 0 or i + 1 == n):
                progress(i + 1, n)
        if bad:
            more = f" ({len(bad)} bad files in this split)" if len(bad) > 1 else ""
            raise DatasetFormatError(f"{bad[0]}{more}; remove or replace it, then start again")
        if keep is None:
            warnings.warn(
                f"{self.info.name} {self.split}: {n} images take {nbytes / 2**30:.2f} GiB decoded, "
                f"over the memory budget of {memory_budget / 2**30:.2f} GiB; streaming them from "
                "disk every epoch (slower): use a smaller --image-size or raise the budget",
                StreamingWarning,
                stacklevel=3,
            )
        else:
            self.in_memory, self.images = True, keep

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def __len__(self) -> int:
        return len(self.samples)

    def load_uint8(self, i: int) -> torch.Tensor:
        """Sample i as uint8 (C, H, W)."""
        return self.images[i] if self.in_memory else self._decode(i)

    def _decode(self, i: int) -> torch.Tensor:
        """Sample i decoded from its file, as uint8 (C, H, W)."""
        path, _ = self.samples[i]
        try:
            img = images.flatten_alpha(images.open_image(path))
        except ImageInputError as e:
            raise DatasetFormatError(str(e)) from None
        img = img.convert("L" if self.channels == 1 else "RGB")
        img = images.fit_and_pad(img, (self.image_size, self.image_size))
        arr = np.asarray(img, dtype=np.uint8).reshape(self.image_size, self.image_size, -1)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.load_uint8(i).float().div_(255), int(self.targets[i])

    def class_counts(self) -> list[int]:
        return torch.bincount(self.targets, minlength=len(self.classes)).tolist()


def _split_samples(base: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """(file, label) pairs of a train/ or test/ folder, labelled by train/'s class names."""
    for name in _class_folders(base):
        if name not in classes:
            raise ConfigError(
                f"{base / name}: class {name!r} is not in {base.parent / 'train'} "
                f"(its classes: {', '.join(classes)}); add it there or remove it here"
            )
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        if (base / name).is_dir():  # a test/ folder may lack some of train/'s classes
            samples += [(f, label) for f in _class_files(base / name)]
    if not samples:
        raise ConfigError(f"{base}: no class subfolders with images")
    return samples


def _seeded_samples(
    base: Path, classes: list[str], split: str, test_fraction: float, seed: int
) -> list[tuple[Path, int]]:
    """(file, label) pairs of one side of the seeded per-class split."""
    samples: list[tuple[Path, int]] = []
    rng = np.random.default_rng(seed)
    for label, cls in enumerate(classes):
        files = _class_files(base / cls)
        order = rng.permutation(len(files))
        n_test = int(round(len(files) * test_fraction))
        keep = order[:n_test] if split == "test" else order[n_test:]
        samples += [(files[i], label) for i in sorted(keep)]
    if not samples:
        raise ConfigError(f"{base}: no images left for the {split} split")
    return samples
