"""How each dataset's verified files become one uint8 image array and one label array per split.

A reader is called as `reader(raw_dir, info, split)` and returns `(images, labels)`: uint8
(N, C, H, W) or (N, H, W), and integer labels in 0..num_classes - 1. Every file it opens has
passed its MD5 check in `sources.fetch` first; archives are read member by member, never
extracted, and nothing is unpickled.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np

from cnnlab.data import idx, sources
from cnnlab.errors import DatasetFormatError


def _path(raw_dir: Path, res: sources.Resource) -> Path:
    """The verified file of a resource (fetch has just checked it is there)."""
    path = sources.resource_path(raw_dir, res)
    if path is None:
        raise DatasetFormatError(f"{raw_dir / res.name}: missing; run `cnnlab data fetch` again")
    return path


def read_idx_split(raw_dir: Path, info, split: str) -> tuple[np.ndarray, np.ndarray]:
    """An IDX images file and an IDX labels file of bytes (MNIST, Fashion-MNIST, KMNIST)."""
    images_res, labels_res = info.files[split]
    images_path, labels_path = _path(raw_dir, images_res), _path(raw_dir, labels_res)
    x = idx.read_images(images_path)
    y = idx.read_labels(labels_path, info.num_classes)
    idx.check_pair(x, y, images_path, labels_path)
    return x, y


def read_qmnist_split(raw_dir: Path, info, split: str) -> tuple[np.ndarray, np.ndarray]:
    """QMNIST: labels are an (N, 8) int32 IDX table whose first column is the digit."""
    images_res, labels_res = info.files[split]
    images_path, labels_path = _path(raw_dir, images_res), _path(raw_dir, labels_res)
    x = idx.read_images(images_path)
    table = idx.read_idx(labels_path)
    if table.ndim != 2 or table.shape[1] < 1 or table.dtype.kind != "i":
        raise DatasetFormatError(
            f"{labels_path}: QMNIST labels must be an (N, 8) integer table, found "
            f"{table.ndim}-D {table.dtype}. Delete the file and run `cnnlab data fetch` again."
        )
    y = idx.check_label_range(table[:, 0].astype(np.int64), labels_path, info.num_classes)
    idx.check_pair(x, y, images_path, labels_path)
    return x, y


class EmnistZip:
    """EMNIST from NIST's `gzip.zip`: one subset's four IDX .gz members, read in place.

    EMNIST stores each image transposed relative to MNIST; we transpose it back, so letters
    stand upright. `first_label` is the subset's smallest label: letters are numbered 1..26
    (0 is unused), shifted here to 0..25.
    """

    def __init__(self, subset: str, first_label: int = 0):
        self.subset, self.first_label = subset, first_label

    def member(self, split: str, kind: str) -> str:
        """The zip member of a split's images or labels."""
        side = "train" if split == "train" else "test"
        ubyte = "images-idx3-ubyte" if kind == "images" else "labels-idx1-ubyte"
        return f"gzip/emnist-{self.subset}-{side}-{ubyte}.gz"

    def __call__(self, raw_dir: Path, info, split: str) -> tuple[np.ndarray, np.ndarray]:
        (archive_res,) = info.files[split]
        archive = _path(raw_dir, archive_res)
        x = idx.check_images(self._read(archive, self.member(split, "images")), archive)
        labels_name = f"{archive}:{self.member(split, 'labels')}"
        raw = self._read(archive, self.member(split, "labels"))
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise DatasetFormatError(f"{labels_name}: labels must be a 1-D array of bytes")
        y = idx.check_label_range(raw.astype(np.int64) - self.first_label, labels_name, info.num_classes)
        idx.check_pair(x, y, archive, labels_name)
        return np.ascontiguousarray(x.swapaxes(-1, -2)), y

    @staticmethod
    def _read(archive: Path, member: str) -> np.ndarray:
        """One gzip IDX member of the zip, decompressed as it streams."""
        name = f"{archive}:{member}"
        try:
            with zipfile.ZipFile(archive) as zf, zf.open(member) as raw, gzip.open(raw) as stream:
                return idx.read_idx_stream(stream, name)
        except KeyError:
            raise DatasetFormatError(
                f"{archive} has no {member}; is it NIST's EMNIST gzip.zip? Delete it and fetch again"
            ) from None
        except zipfile.BadZipFile as e:
            raise DatasetFormatError(
                f"{archive}: not a readable zip ({e}); delete it and fetch again"
            ) from None
