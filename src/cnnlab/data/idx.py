"""Strict reader and writer for IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic (0, 0, dtype code, number of dimensions), one big-endian uint32
per dimension, then the data, big-endian, C order. Files may be gzip-compressed; we detect
that by the 1F 8B magic, never by the file name.

Everything is validated before the data array is allocated, and every failure raises one
`DatasetFormatError` naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cnnlab.errors import DatasetFormatError

GZIP_MAGIC = b"\x1f\x8b"

# dtype code -> big-endian numpy dtype (the IDX spec's table)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
DTYPE_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}

MAX_NDIM = 4  # images are (N, H, W) or (N, C, H, W); labels are (N,)
MAX_DIM = 1 << 24  # 16.7M: larger than any real image side or sample count we accept
MAX_DATA_BYTES = 2 << 30  # 2 GiB: refuse before allocating anything bigger


def _fail(path: str | os.PathLike, what: str) -> DatasetFormatError:
    return DatasetFormatError(f"{path}: {what}. Delete the file and run `cnnlab data fetch` again.")


def is_gzip(path: str | os.PathLike) -> bool:
    """True when the file starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _open(path: str | os.PathLike) -> BinaryIO:
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # noqa: SIM115


def _read_exact(stream: BinaryIO, n: int, path, what: str) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(min(left, 1 << 24))
        if not chunk:
            got = n - left
            raise _fail(path, f"truncated {what}: expected {n} bytes, found {got}")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def parse_header(header: bytes, path) -> tuple[np.dtype, int]:
    """Decode the magic and the dimensions; raise on anything unusual."""
    if len(header) < 4:
        raise _fail(path, f"file too short for an IDX header ({len(header)} bytes)")
    zero1, zero2, code, ndim = header[:4]
    if zero1 != 0 or zero2 != 0:
        raise _fail(path, f"bad magic {header[:4].hex()} (an IDX file starts with 00 00)")
    if code not in IDX_DTYPES:
        raise _fail(path, f"unknown IDX dtype code 0x{code:02x}")
    if not 1 <= ndim <= MAX_NDIM:
        raise _fail(path, f"{ndim} dimensions (expected 1 to {MAX_NDIM})")
    return IDX_DTYPES[code], ndim


def read_idx(path: str | os.PathLike, max_bytes: int = MAX_DATA_BYTES) -> np.ndarray:
    """Read a raw or gzip IDX file into a native-endian numpy array.

    Raises:
        DatasetFormatError: on any malformation (names the file and the problem).
    """
    path = os.fspath(path)
    try:
        with _open(path) as stream:
            return read_idx_stream(stream, path, max_bytes)
    except FileNotFoundError:
        raise DatasetFormatError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DatasetFormatError(f"{path}: is a directory, not an IDX file") from None


def read_idx_stream(stream: BinaryIO, path, max_bytes: int = MAX_DATA_BYTES) -> np.ndarray:
    """Read one IDX array from an open (already decompressed) stream; `path` names it in errors.

    Raises:
        DatasetFormatError: on any malformation, a corrupt gzip stream included.
    """
    try:
        magic = stream.read(4)
        dtype, ndim = parse_header(magic, path)
        dims_raw = _read_exact(stream, 4 * ndim, path, "dimension list")
        dims = struct.unpack(f">{ndim}I", dims_raw)
        for i, d in enumerate(dims):
            if d == 0:
                raise _fail(path, f"dimension {i} is 0")
            if d > MAX_DIM:
                raise _fail(path, f"dimension {i} is {d}, larger than the limit {MAX_DIM}")
        nbytes = math.prod(dims) * dtype.itemsize
        if nbytes > max_bytes:
            raise _fail(path, f"data would take {nbytes} bytes, over the limit {max_bytes}")
        data = _read_exact(stream, nbytes, path, "data")
        if stream.read(1):
            raise _fail(path, f"trailing bytes after the {nbytes} data bytes")
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise _fail(path, f"corrupt gzip stream ({e or type(e).__name__})") from None
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def read_images(path: str | os.PathLike) -> np.ndarray:
    """Read an image file: uint8 of shape (N, H, W) or (N, C, H, W)."""
    return check_images(read_idx(path), path)


def check_images(arr: np.ndarray, path) -> np.ndarray:
    """Refuse an image array that is not uint8 (N, [C,] H, W); `path` names it."""
    if arr.dtype != np.uint8:
        raise _fail(path, f"images must be unsigned bytes, found {arr.dtype}")
    if arr.ndim not in (3, 4):
        raise _fail(path, f"images need 3 or 4 dimensions (N, [C,] H, W), found {arr.ndim}")
    return arr


def read_labels(path: str | os.PathLike, num_classes: int) -> np.ndarray:
    """Read a label file: uint8 of shape (N,), every value below num_classes."""
    arr = read_idx(path)
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise _fail(path, f"labels must be a 1-D array of bytes, found {arr.ndim}-D {arr.dtype}")
    return check_label_range(arr, path, num_classes)


def check_label_range(arr: np.ndarray, path, num_classes: int) -> np.ndarray:
    """Refuse labels outside 0..num_classes - 1; `path` names the file."""
    bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise _fail(path, f"label {int(arr[i])} at index {i} is outside 0..{num_classes - 1}")
    return arr


def check_pair(images: np.ndarray, labels: np.ndarray, images_path, labels_path) -> None:
    """Raise when the image and label files do not hold the same number of samples."""
    if len(images) != len(labels):
        raise DatasetFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels. Delete both files and run `cnnlab data fetch` again."
        )


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of an array (big-endian, as the format requires)."""
    native = array.dtype.newbyteorder("=")
    if native not in DTYPE_CODES:
        raise DatasetFormatError(f"cannot store dtype {array.dtype} in IDX")
    if not 1 <= array.ndim <= MAX_NDIM:
        raise DatasetFormatError(f"cannot store a {array.ndim}-D array in IDX")
    header = bytes([0, 0, DTYPE_CODES[native], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    big = np.ascontiguousarray(array, dtype=native.newbyteorder(">"))
    return header + big.tobytes()


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to `path.part`, fsync, then rename over `path`: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with open(part, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write an array as IDX, atomically; gzip when `compress` (default: name ends in .gz)."""
    data = encode_idx(array)
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    if compress:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
            gz.write(data)
        data = buf.getvalue()
    write_atomic(path, data)


def raw_md5(path: str | os.PathLike) -> str:
    """MD5 of the file's decompressed (raw IDX) bytes; the official tables list these."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with _open(path) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise _fail(path, f"corrupt gzip stream ({e or type(e).__name__})") from None
    return digest.hexdigest()
