"""Dataset registry: each dataset is a table (files, MD5s, classes, statistics, sources).

`load_dataset("mnist", "train")` returns an `ImageDataset`: the whole split in memory as one
uint8 tensor, which is also a `torch.utils.data.Dataset` yielding (float 1x28x28 in [0, 1],
int label), so the lesson's `DataLoader(train_set, batch_size=64)` works as written.
`imagefolder:PATH` is a user's folder of class subfolders, decoded lazily.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnlab.data import idx, images, sources
from cnnlab.data.sources import Resource
from cnnlab.errors import ConfigError, DatasetFormatError, ImageInputError

SPLITS = ("train", "test")


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
    files: dict[str, tuple[Resource, Resource]] = field(default_factory=dict)  # split -> files
    sources: tuple = ()
    description: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def resources(self) -> list[Resource]:
        return [res for pair in self.files.values() for res in pair]


def _files(md5s: dict[str, str]) -> dict[str, tuple[Resource, Resource]]:
    r = {name: Resource(name, md5) for name, md5 in md5s.items()}
    return {
        "train": (r["train-images-idx3-ubyte"], r["train-labels-idx1-ubyte"]),
        "test": (r["t10k-images-idx3-ubyte"], r["t10k-labels-idx1-ubyte"]),
    }


MNIST = DatasetInfo(
    name="mnist",
    classes=tuple(str(d) for d in range(10)),
    image_shape=(1, 28, 28),
    mean=(0.1307,),
    std=(0.3081,),
    style="digits",
    folder="MNIST",
    files=_files(
        {
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        }
    ),
    sources=(
        sources.RootFiles(),
        sources.MnistHubPackage(),
        sources.TorchvisionDownload("MNIST"),
    ),
    description="handwritten digits 0-9, 60k train / 10k test, 28x28 grey",
)

FASHION_MNIST = DatasetInfo(
    name="fashion-mnist",
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    image_shape=(1, 28, 28),
    mean=(0.2860,),
    std=(0.3530,),
    style="fit",
    folder="FashionMNIST",
    files=_files(
        {
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        }
    ),
    sources=(
        sources.RootFiles(),
        sources.DebianDirectory("/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist"),
        sources.TorchvisionDownload("FashionMNIST"),
    ),
    description="Zalando clothing, 10 classes, 60k train / 10k test, 28x28 grey",
)

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (MNIST, FASHION_MNIST)}
IMAGEFOLDER_PREFIX = "imagefolder:"


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


def fetch_dataset(name: str, root: str | os.PathLike | None = None) -> sources.FetchResult:
    """Make sure the dataset's verified files are under the root; say which source served it."""
    info = get_dataset_info(name)
    root = Path(root) if root else default_root()
    return sources.fetch(info.folder, info.resources, root, info.sources)


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


_cache: dict[tuple[str, str, str], ImageDataset] = {}


def load_dataset(
    name: str, split: str = "train", root: str | os.PathLike | None = None, **folder_options
) -> Dataset:
    """Load a split into memory (once per process), fetching and verifying the files first.

    Args:
        name: a registered dataset (`mnist`, `fashion-mnist`) or `imagefolder:PATH`.
        split: "train" or "test".
        root: data root (default `$CNNLAB_DATA` or `~/.cache/cnnlab`).
        folder_options: for image folders: image_size, channels, test_fraction, seed.
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
        images_res, labels_res = info.files[split]
        images_path = sources.find_raw_file(fetched.raw_dir, images_res.name)
        labels_path = sources.find_raw_file(fetched.raw_dir, labels_res.name)
        x = idx.read_images(images_path)
        y = idx.read_labels(labels_path, info.num_classes)
        idx.check_pair(x, y, images_path, labels_path)
        if x.ndim == 3:
            x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
        _cache[key] = ImageDataset(
            torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(y.astype(np.int64)),
            info,
            split,
        )
    return _cache[key]


def clear_cache() -> None:
    _cache.clear()


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
    train/ lacks is refused). Every image is decoded once when the dataset is built, so a bad
    file is refused, named, before any training; later images are decoded lazily, converted to
    `channels` and fitted into `image_size` squares.
    """

    in_memory = False

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        image_size: int = 28,
        channels: int = 1,
        test_fraction: float = 0.2,
        seed: int = 0,
    ):
        if not os.fspath(path).strip():
            raise ConfigError("imagefolder: needs a path, e.g. imagefolder:data/digits")
        root = Path(path).expanduser()
        if not root.is_dir():
            raise ConfigError(f"image folder {root} not found (expected class subfolders)")
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, not {channels}")
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
        self._check_images()

    def _check_images(self) -> None:
        """Decode every image once; refuse the folder, naming the first bad file, if any fails."""
        bad = []
        for i in range(len(self.samples)):
            try:
                self.load_uint8(i)
            except DatasetFormatError as e:
                bad.append(str(e))
        if bad:
            more = f" ({len(bad)} bad files in this split)" if len(bad) > 1 else ""
            raise DatasetFormatError(f"{bad[0]}{more}; remove or replace it, then start again")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def __len__(self) -> int:
        return len(self.samples)

    def load_uint8(self, i: int) -> torch.Tensor:
        """Sample i as uint8 (C, H, W)."""
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
