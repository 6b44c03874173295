"""The strict IDX reader: every malformation raises DatasetFormatError naming the file."""

import gzip
import struct

import numpy as np
import pytest

from cnnlab.data import idx
from cnnlab.errors import DatasetFormatError


def images(n=5, h=4, w=3):
    return np.arange(n * h * w, dtype=np.uint8).reshape(n, h, w)


@pytest.mark.parametrize("compress", [False, True])
def test_roundtrip_raw_and_gzip(tmp_path, compress):
    path = tmp_path / "x-idx3-ubyte"  # gzip is detected by content, not by the name
    idx.write_idx(path, images(), compress=compress)
    assert idx.is_gzip(path) == compress
    np.testing.assert_array_equal(idx.read_images(path), images())


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_roundtrip_other_dtypes(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    idx.write_idx(tmp_path / "a", arr)
    out = idx.read_idx(tmp_path / "a")
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, arr)


def test_gzip_name_but_raw_content(tmp_path):
    path = tmp_path / "looks.gz"
    idx.write_idx(path, images(), compress=False)
    np.testing.assert_array_equal(idx.read_images(path), images())


def raw_bytes():
    return idx.encode_idx(images())


BAD_FILES = {
    "empty": b"",
    "truncated by 1 byte": raw_bytes()[:-1],
    "truncated by half": raw_bytes()[: len(raw_bytes()) // 2],
    "header only": raw_bytes()[:8],
    "wrong magic": b"\x01\x02" + raw_bytes()[2:],
    "wrong dtype": raw_bytes()[:2] + b"\x07" + raw_bytes()[3:],
    "zero dimensions": b"\x00\x00\x08\x00",
    "too many dimensions": b"\x00\x00\x08\x09" + b"\x00\x00\x00\x01" * 9,
    "dimension 0": b"\x00\x00\x08\x03" + struct.pack(">3I", 0, 4, 3),
    "dimension 2^31": b"\x00\x00\x08\x03" + struct.pack(">3I", 2**31, 28, 28),
    "absurd total": b"\x00\x00\x08\x03" + struct.pack(">3I", 10**7, 1000, 1000),
    "trailing bytes": raw_bytes() + b"\x00",
    "corrupt gzip": b"\x1f\x8b" + b"garbage" * 10,
    "gzip truncated": gzip.compress(raw_bytes())[:-10],
    "gzip of truncated data": gzip.compress(raw_bytes()[:-1]),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_raise_naming_the_file(tmp_path, case):
    path = tmp_path / f"bad-{case.replace(' ', '_')}"
    path.write_bytes(BAD_FILES[case])
    with pytest.raises(DatasetFormatError) as err:
        idx.read_images(path)
    assert str(path) in str(err.value)


def test_huge_dimension_does_not_allocate(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 2**24, 2**24, 2**24))
    with pytest.raises(DatasetFormatError, match="limit"):
        idx.read_idx(path)


def test_labels_out_of_range(tmp_path):
    path = tmp_path / "labels"
    idx.write_idx(path, np.array([0, 1, 10, 2], dtype=np.uint8))
    with pytest.raises(DatasetFormatError, match="label 10 at index 2"):
        idx.read_labels(path, num_classes=10)


def test_labels_must_be_1d(tmp_path):
    path = tmp_path / "labels"
    idx.write_idx(path, images())
    with pytest.raises(DatasetFormatError, match=str(path)):
        idx.read_labels(path, 10)


def test_images_must_be_bytes(tmp_path):
    path = tmp_path / "f"
    idx.write_idx(path, np.zeros((2, 3, 3), np.float32))
    with pytest.raises(DatasetFormatError, match="unsigned bytes"):
        idx.read_images(path)


def test_count_mismatch(tmp_path):
    with pytest.raises(DatasetFormatError, match="5 images but .* 4 labels"):
        idx.check_pair(images(5), np.zeros(4, np.uint8), "imgs", "labels")


def test_missing_file(tmp_path):
    with pytest.raises(DatasetFormatError, match="not found"):
        idx.read_idx(tmp_path / "nope")


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "a"
    idx.write_idx(path, images())
    good = path.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(idx.os, "replace", boom)
    with pytest.raises(OSError):
        idx.write_idx(path, images(7))
    assert path.read_bytes() == good  # previous file untouched
    assert not (tmp_path / "a.part").exists()


def test_raw_md5_same_for_raw_and_gzip(tmp_path):
    idx.write_idx(tmp_path / "r", images())
    idx.write_idx(tmp_path / "g.gz", images())
    assert idx.raw_md5(tmp_path / "r") == idx.raw_md5(tmp_path / "g.gz")
