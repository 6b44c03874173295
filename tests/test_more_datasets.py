"""KMNIST, EMNIST digits/letters, QMNIST and CIFAR-10 on small generated files in their real formats.

Each test writes the published files (IDX .gz, NIST's gzip.zip, CIFAR's binary tarball) into a
temp data root, patches the dataset's MD5 table to those files' MD5s, and loads them through the
same code path as the real files. No test downloads (CNNLAB_OFFLINE is set by conftest).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.data import cifar, datasets, idx, sources
from cnnlab.data.factory import make_batches
from cnnlab.errors import DatasetFormatError, DatasetNotFoundError
from cnnlab.models import get_model


def gz(data: bytes) -> bytes:
    """Deterministic gzip bytes (mtime 0)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def register(monkeypatch, name: str, files: dict, root) -> datasets.DatasetInfo:
    """The dataset `name` with its MD5 table pointed at the generated files; root as the data root."""
    info = datasets.DATASETS[name]
    by_name = {
        res.name: sources.Resource(res.name, sources.file_md5(files[res.name]), True)
        for res in info.resources
    }
    table = {split: tuple(by_name[r.name] for r in pair) for split, pair in info.files.items()}
    patched = dataclasses.replace(info, files=table, sources=(sources.RootFiles(),))
    monkeypatch.setitem(datasets.DATASETS, name, patched)
    monkeypatch.setenv("CNNLAB_DATA", str(root))
    datasets.clear_cache()
    return patched


def images(n: int, seed: int) -> np.ndarray:
    """uint8 (n, 28, 28) whose top row is bright and left column dark: shows any transpose."""
    x = np.random.default_rng(seed).integers(0, 50, (n, 28, 28)).astype(np.uint8)
    x[:, 0, :] = 250
    x[:, :, 0] = 0
    return x


def write_idx_gz(raw, names_arrays: dict) -> dict:
    """Each array as NAME (a .gz of its IDX bytes) under raw; returns name -> path."""
    raw.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, arr in names_arrays.items():
        (raw / name).write_bytes(gz(idx.encode_idx(arr)))
        paths[name] = raw / name
    return paths


@pytest.fixture(autouse=True)
def _fresh_cache():
    datasets.clear_cache()
    yield
    datasets.clear_cache()


def test_kmnist_loads_its_published_gz_files(tmp_path, monkeypatch):
    y_train, y_test = np.arange(30, dtype=np.uint8) % 10, np.arange(12, dtype=np.uint8) % 10
    files = write_idx_gz(
        tmp_path / "KMNIST" / "raw",
        {
            "train-images-idx3-ubyte.gz": images(30, 1),
            "train-labels-idx1-ubyte.gz": y_train,
            "t10k-images-idx3-ubyte.gz": images(12, 2),
            "t10k-labels-idx1-ubyte.gz": y_test,
        },
    )
    register(monkeypatch, "kmnist", files, tmp_path)
    train, test = datasets.load_dataset("kmnist", "train"), datasets.load_dataset("kmnist", "test")
    assert train.images.shape == (30, 1, 28, 28) and len(test) == 12
    assert train.targets.tolist() == y_train.tolist() and train.classes[:3] == ("o", "ki", "su")
    assert torch.equal(train.images[:, 0], torch.from_numpy(images(30, 1)))  # not transposed


def test_qmnist_takes_the_digit_column_and_keeps_its_60k_style_test_split(tmp_path, monkeypatch):
    def table(n: int) -> np.ndarray:
        t = np.zeros((n, 8), dtype=np.int32)
        t[:, 0] = np.arange(n) % 10  # the digit; the other columns are writer ids and such
        t[:, 2] = 12345
        return t

    files = write_idx_gz(
        tmp_path / "QMNIST" / "raw",
        {
            "qmnist-train-images-idx3-ubyte.gz": images(20, 1),
            "qmnist-train-labels-idx2-int.gz": table(20),
            "qmnist-test-images-idx3-ubyte.gz": images(25, 2),
            "qmnist-test-labels-idx2-int.gz": table(25),
        },
    )
    register(monkeypatch, "qmnist", files, tmp_path)
    test = datasets.load_dataset("qmnist", "test")
    assert len(test) == 25 and test.targets.tolist() == [i % 10 for i in range(25)]
    assert "60k test" in datasets.QMNIST.description


def write_emnist_zip(path, subset: str, splits: dict) -> None:
    """NIST's gzip.zip layout: gzip/emnist-SUBSET-{train,test}-{images,labels}-... .gz members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for side, (x, y) in splits.items():
            zf.writestr(f"gzip/emnist-{subset}-{side}-images-idx3-ubyte.gz", gz(idx.encode_idx(x)))
            zf.writestr(f"gzip/emnist-{subset}-{side}-labels-idx1-ubyte.gz", gz(idx.encode_idx(y)))


def test_emnist_digits_are_transposed_upright(tmp_path, monkeypatch):
    stored = images(16, 3).swapaxes(1, 2)  # EMNIST stores the transpose of the upright image
    y = (np.arange(16) % 10).astype(np.uint8)
    archive = tmp_path / "EMNIST" / "raw" / "gzip.zip"
    write_emnist_zip(archive, "digits", {"train": (stored, y), "test": (stored[:6], y[:6])})
    register(monkeypatch, "emnist-digits", {"gzip.zip": archive}, tmp_path)
    train = datasets.load_dataset("emnist-digits", "train")
    assert torch.equal(train.images[:, 0], torch.from_numpy(images(16, 3)))
    assert (train.images[:, 0, 0, 1:] == 250).all()  # the bright row is on top again
    assert len(datasets.load_dataset("emnist-digits", "test")) == 6


def test_emnist_letters_labels_1_to_26_become_0_to_25(tmp_path, monkeypatch):
    y = (np.arange(52) % 26 + 1).astype(np.uint8)  # a..z are 1..26 in the files
    archive = tmp_path / "EMNIST" / "raw" / "gzip.zip"
    write_emnist_zip(archive, "letters", {"train": (images(52, 4), y), "test": (images(26, 5), y[:26])})
    register(monkeypatch, "emnist-letters", {"gzip.zip": archive}, tmp_path)
    train = datasets.load_dataset("emnist-letters", "train")
    assert train.targets.tolist() == [i % 26 for i in range(52)]
    assert train.classes[0] == "a" and train.classes[25] == "z" and train.info.num_classes == 26


def test_emnist_letters_label_0_is_refused_naming_the_member(tmp_path, monkeypatch):
    y = np.zeros(4, dtype=np.uint8)  # 0 means "N/A" in EMNIST letters
    archive = tmp_path / "EMNIST" / "raw" / "gzip.zip"
    write_emnist_zip(archive, "letters", {"train": (images(4, 4), y), "test": (images(4, 5), y)})
    register(monkeypatch, "emnist-letters", {"gzip.zip": archive}, tmp_path)
    with pytest.raises(
        DatasetFormatError, match=r"gzip\.zip:gzip/emnist-letters-train-labels.*label -1"
    ):
        datasets.load_dataset("emnist-letters", "train")


def cifar_records(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """n CIFAR-10 binary records (1 label byte + 3072 pixel bytes) and what they hold."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    x = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    x[:, 0] = 200  # the red plane comes first in each record
    records = np.concatenate([labels[:, None], x.reshape(n, -1)], axis=1)
    return records.tobytes(), x, labels


def write_cifar_tar(path, batches: dict[str, bytes]) -> None:
    """cifar-10-binary.tar.gz with cifar-10-batches-bin/<name> members."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in batches.items():
            member = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def test_cifar10_reads_binary_records_in_batch_order(tmp_path, monkeypatch):
    parts = [cifar_records(3, i) for i in range(6)]
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    archive = tmp_path / "cifar-10-binary.tar.gz"
    write_cifar_tar(archive, {n: p[0] for n, p in zip(names, parts, strict=True)})
    register(monkeypatch, "cifar10", {"cifar-10-binary.tar.gz": archive}, tmp_path)
    train, test = datasets.load_dataset("cifar10", "train"), datasets.load_dataset("cifar10", "test")
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(np.concatenate([p[1] for p in parts[:5]])))
    assert train.targets.tolist() == np.concatenate([p[2] for p in parts[:5]]).tolist()
    assert test.info.classes[0] == "airplane" and len(test.info.mean) == 3


def test_cifar10_truncated_batch_and_missing_member_are_named(tmp_path, monkeypatch):
    good = {f"data_batch_{i}.bin": cifar_records(2, i)[0] for i in range(1, 6)}
    archive = tmp_path / "cifar-10-binary.tar.gz"
    write_cifar_tar(archive, {**good, "data_batch_3.bin": good["data_batch_3.bin"][:-5]})
    register(monkeypatch, "cifar10", {"cifar-10-binary.tar.gz": archive}, tmp_path)
    with pytest.raises(DatasetFormatError, match="data_batch_3.bin: 6141 bytes is not a whole number"):
        datasets.load_dataset("cifar10", "train")
    with pytest.raises(DatasetFormatError, match="lacks cifar-10-batches-bin/test_batch.bin"):
        datasets.load_dataset("cifar10", "test")


def test_parse_records_refuses_labels_over_9():
    data = bytearray(cifar_records(2, 0)[0])
    data[cifar.RECORD] = 10  # the second record's label
    with pytest.raises(DatasetFormatError, match="label 10 at index 1"):
        cifar.parse_records(bytes(data), "x.bin")


def test_a_packed_file_with_the_wrong_md5_is_refused(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    write_cifar_tar(archive, {"test_batch.bin": cifar_records(2, 0)[0]})
    register(monkeypatch, "cifar10", {"cifar-10-binary.tar.gz": archive}, tmp_path)
    archive.write_bytes(archive.read_bytes() + b"x")
    with pytest.raises(DatasetNotFoundError, match="cifar-10-binary.tar.gz is corrupt"):
        datasets.load_dataset("cifar10", "test")


@pytest.mark.parametrize(
    "name,where",
    [
        ("kmnist", "in <root>/KMNIST/raw"),
        ("emnist-digits", "gzip.zip .* in <root>/EMNIST/raw"),
        ("emnist-letters", "gzip.zip .* in <root>/EMNIST/raw"),
        ("qmnist", "qmnist-.* in <root>/QMNIST/raw"),
        ("cifar10", "cifar-10-binary.tar.gz .* in <root>"),
    ],
)
def test_missing_files_say_where_to_put_them_and_nothing_downloads(tmp_path, name, where):
    with pytest.raises(DatasetNotFoundError, match=where) as e:
        datasets.load_dataset(name, "train", tmp_path)
    assert "skipped (CNNLAB_OFFLINE is set)" in str(e.value) and "\n" not in str(e.value)


def test_data_info_for_a_new_dataset(tmp_path, monkeypatch, capsys):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    write_cifar_tar(archive, {n: cifar_records(2, i)[0] for i, n in enumerate(names)})
    register(monkeypatch, "cifar10", {"cifar-10-binary.tar.gz": archive}, tmp_path)
    assert main(["data", "info", "--dataset", "cifar10", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["image_shape"] == [3, 32, 32] and facts["splits"]["train"]["images"] == 10
    assert facts["classes"][-1] == "truck"


@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_cnn_and_resnet_take_cifar_shaped_batches(tmp_path, monkeypatch, model):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    write_cifar_tar(archive, {"test_batch.bin": cifar_records(4, 0)[0]})
    register(monkeypatch, "cifar10", {"cifar-10-binary.tar.gz": archive}, tmp_path)
    test = datasets.load_dataset("cifar10", "test")
    net = get_model(model, test.info.image_shape, test.info.num_classes)
    x, _ = next(iter(make_batches(test, 4, test.info.mean, test.info.std)))
    assert x.shape == (4, 3, 32, 32) and net(x).shape == (4, 10)


def write_published(name: str, root) -> dict:
    """Small generated files of a dataset, as published, under root: name -> path."""
    y = (np.arange(20) % 10).astype(np.uint8)
    if name == "kmnist":
        return write_idx_gz(
            root / "KMNIST" / "raw",
            {
                "train-images-idx3-ubyte.gz": images(20, 1),
                "train-labels-idx1-ubyte.gz": y,
                "t10k-images-idx3-ubyte.gz": images(20, 2),
                "t10k-labels-idx1-ubyte.gz": y,
            },
        )
    if name == "qmnist":
        t = np.zeros((20, 8), dtype=np.int32)
        t[:, 0] = y
        return write_idx_gz(
            root / "QMNIST" / "raw",
            {
                "qmnist-train-images-idx3-ubyte.gz": images(20, 1),
                "qmnist-train-labels-idx2-int.gz": t,
                "qmnist-test-images-idx3-ubyte.gz": images(20, 2),
                "qmnist-test-labels-idx2-int.gz": t,
            },
        )
    if name.startswith("emnist"):
        subset, labels = ("letters", y + 1) if name == "emnist-letters" else ("digits", y)
        archive = root / "EMNIST" / "raw" / "gzip.zip"
        write_emnist_zip(
            archive, subset, {"train": (images(20, 1), labels), "test": (images(20, 2), labels)}
        )
        return {"gzip.zip": archive}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    write_cifar_tar(
        root / "cifar-10-binary.tar.gz", {n: cifar_records(4, i)[0] for i, n in enumerate(names)}
    )
    return {"cifar-10-binary.tar.gz": root / "cifar-10-binary.tar.gz"}


@pytest.mark.parametrize("name", ["kmnist", "emnist-digits", "emnist-letters", "qmnist", "cifar10"])
def test_data_info_and_show_work_for_each(tmp_path, monkeypatch, capsys, name):
    register(monkeypatch, name, write_published(name, tmp_path), tmp_path)
    assert main(["data", "info", "--dataset", name]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: ") and "images per class:" in out
    assert main(["data", "show", "--dataset", name, "--n", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
