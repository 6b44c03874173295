"""CIFAR-10's binary version: fixed-length records, read from the published tarball in place.

`cifar-10-binary.tar.gz` holds `cifar-10-batches-bin/data_batch_1.bin` .. `data_batch_5.bin`
(train) and `test_batch.bin`, each 10,000 records of 1 label byte + 3,072 pixel bytes (the red,
then green, then blue 32x32 plane, row by row). Only those regular members are read; nothing is
extracted and nothing is unpickled (the python version of CIFAR-10 is a pickle: never used).
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np

from cnnlab.data import idx, sources
from cnnlab.errors import DatasetFormatError

SHAPE = (3, 32, 32)
RECORD = 1 + 3 * 32 * 32
MEMBER_DIR = "cifar-10-batches-bin"
BATCHES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}


def parse_records(data: bytes, name: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) of one batch file's bytes."""
    if not data or len(data) % RECORD:
        raise DatasetFormatError(
            f"{name}: {len(data)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records. "
            "Delete the archive and run `cnnlab data fetch` again."
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = idx.check_label_range(records[:, 0].astype(np.int64), name, num_classes)
    return records[:, 1:].reshape(-1, *SHAPE), labels


def read_cifar_split(raw_dir: Path, info, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split of CIFAR-10 from the verified tarball, batches in their official order."""
    (archive_res,) = info.files[split]
    archive = sources.resource_path(raw_dir, archive_res)
    if archive is None:
        raise DatasetFormatError(f"{raw_dir / archive_res.name}: missing; run `cnnlab data fetch`")
    wanted = {f"{MEMBER_DIR}/{b}": b for b in BATCHES[split]}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r|gz") as tar:  # one streaming pass
            for member in tar:
                if member.name in wanted and member.isfile():
                    found[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DatasetFormatError(
            f"{archive}: unreadable tar.gz ({e}); delete it and fetch again"
        ) from None
    missing = [m for m in wanted if m not in found]
    if missing:
        raise DatasetFormatError(f"{archive} lacks {', '.join(missing)}; delete it and fetch again")
    parts = [parse_records(found[m], f"{archive}:{m}", info.num_classes) for m in wanted]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
