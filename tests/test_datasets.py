"""Datasets: registry, in-memory split, DataLoader compatibility, image folders, real MNIST."""

import contextlib
import hashlib
import os
import sys

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cnnlab.data import datasets, idx
from cnnlab.errors import ConfigError, DatasetFormatError


def test_fake_dataset_loads(fake_dataset):
    train = datasets.load_dataset("fake", "train")
    assert len(train) == 600 and train.images.shape == (600, 1, 28, 28)
    x, y = train[0]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28) and 0 <= x.min() <= x.max() <= 1
    assert isinstance(y, int)
    assert sum(train.class_counts()) == 600


def test_dataloader_works_like_the_lesson(fake_dataset):
    loader = DataLoader(datasets.load_dataset("fake", "train"), batch_size=64)
    assert len(loader) == 10  # ceil(600 / 64)
    images, labels = next(iter(loader))
    assert images.shape == (64, 1, 28, 28) and labels.shape == (64,)


def test_unknown_dataset_and_split():
    with pytest.raises(ConfigError, match="unknown dataset"):
        datasets.load_dataset("cifar-1000")
    with pytest.raises(ConfigError, match="unknown split"):
        datasets.load_dataset("mnist", "valid")


def test_fewer_labels_than_images_fails_at_load(tmp_path, monkeypatch):
    from tests.conftest import write_fake_dataset

    info = write_fake_dataset(tmp_path)
    labels_path = tmp_path / info.folder / "raw" / "train-labels-idx1-ubyte"
    short = idx.read_idx(labels_path)[:-1]
    idx.write_idx(labels_path, short)
    res = dict((r.name, r) for r in info.resources)
    res["train-labels-idx1-ubyte"] = type(res["train-labels-idx1-ubyte"])(
        "train-labels-idx1-ubyte", hashlib.md5(idx.encode_idx(short)).hexdigest()
    )
    files = {
        "train": (res["train-images-idx3-ubyte"], res["train-labels-idx1-ubyte"]),
        "test": info.files["test"],
    }
    monkeypatch.setitem(
        datasets.DATASETS,
        "short",
        datasets.DatasetInfo(**{**info.__dict__, "name": "short", "files": files}),
    )
    datasets.clear_cache()
    with pytest.raises(DatasetFormatError, match="600 images but .* 599 labels"):
        datasets.load_dataset("short", "train", tmp_path)


def make_folder(root, classes=("cat", "dog"), n=10):
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40 + i, 30), (k * 200, 50, 50)).save(root / cls / f"{i}.png")


def test_imagefolder_seeded_split(tmp_path):
    make_folder(tmp_path / "pets")
    train = datasets.load_dataset(f"imagefolder:{tmp_path / 'pets'}", "train")
    test = datasets.load_dataset(f"imagefolder:{tmp_path / 'pets'}", "test")
    assert len(train) == 16 and len(test) == 4 and train.classes == ("cat", "dog")
    assert not {p for p, _ in train.samples} & {p for p, _ in test.samples}
    x, y = train[0]
    assert x.shape == (1, 28, 28)
    again = datasets.load_dataset(f"imagefolder:{tmp_path / 'pets'}", "test")
    assert again.samples == test.samples


def test_imagefolder_train_test_dirs_and_rgb(tmp_path):
    make_folder(tmp_path / "d" / "train", n=3)
    make_folder(tmp_path / "d" / "test", n=2)
    ds = datasets.load_dataset(f"imagefolder:{tmp_path / 'd'}", "test", channels=3, image_size=32)
    assert len(ds) == 4 and ds[0][0].shape == (3, 32, 32)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        datasets.load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "one" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="at least 2"):
        datasets.load_dataset(f"imagefolder:{tmp_path / 'one'}")


@pytest.mark.slow
@pytest.mark.parametrize("name,first,counts0", [("mnist", 5, 5923), ("fashion-mnist", 9, 6000)])
def test_real_datasets(real_root, name, first, counts0):
    try:
        train = datasets.load_dataset(name, "train", real_root)
    except Exception as e:  # Fashion-MNIST needs a Debian package outside root
        pytest.skip(f"{name} not available: {e}")
    test = datasets.load_dataset(name, "test", real_root)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape[1:] == (1, 28, 28)
    assert int(train.targets[0]) == first and train.class_counts()[0] == counts0
    assert len(DataLoader(train, batch_size=64)) == 938
    raw = real_root / train.info.folder / "raw"
    for res in train.info.resources:
        assert idx.raw_md5(raw / res.name) == res.md5
    x = train.images.float() / 255
    assert abs(x.mean().item() - train.info.mean[0]) < 1e-3
    assert abs(x.std().item() - train.info.std[0]) < 1e-3


def test_imagefolder_test_split_maps_classes_by_name(tmp_path):
    """test/ lacking a class of train/ keeps train/'s labels: its "2"s are labelled 2, not 1."""
    make_folder(tmp_path / "d" / "train", classes=("0", "1", "2"), n=2)
    make_folder(tmp_path / "d" / "test", classes=("0", "2"), n=3)
    train = datasets.load_dataset(f"imagefolder:{tmp_path / 'd'}", "train")
    test = datasets.load_dataset(f"imagefolder:{tmp_path / 'd'}", "test")
    assert test.classes == train.classes == ("0", "1", "2")
    assert [test.classes[int(t)] for t in test.targets] == [p.parent.name for p, _ in test.samples]
    assert test.targets.tolist() == [0, 0, 0, 2, 2, 2] and test.class_counts() == [3, 0, 3]


def test_imagefolder_test_class_missing_from_train_is_refused(tmp_path):
    make_folder(tmp_path / "d" / "train", classes=("cat", "dog"), n=2)
    make_folder(tmp_path / "d" / "test", classes=("cat", "dog", "emu"), n=2)
    with pytest.raises(ConfigError, match=r"test/emu: class 'emu' is not in .*train") as err:
        datasets.load_dataset(f"imagefolder:{tmp_path / 'd'}", "test")
    assert "\n" not in str(err.value)


def test_imagefolder_empty_path_and_empty_class_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path used to mean the current folder
    make_folder(tmp_path, n=2)
    with pytest.raises(ConfigError, match="imagefolder: needs a path, e.g. imagefolder:data/digits"):
        datasets.load_dataset("imagefolder:", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"/empty: class folder has no images"):
        datasets.load_dataset(f"imagefolder:{tmp_path}", "train")


def test_imagefolder_bad_file_is_refused_before_training(tmp_path, capsys):
    """One line naming the file from `cnnlab train`, before any epoch; no worker traceback."""
    from cnnlab.cli import main as cli_main

    make_folder(tmp_path / "d", n=5)
    (tmp_path / "d" / "cat" / "folder.png").mkdir()  # a folder with an image's name: not a file
    assert len(datasets.load_dataset(f"imagefolder:{tmp_path / 'd'}", "train")) == 8
    (tmp_path / "d" / "dog" / "notes.png").write_text("not an image")
    args = ["--model", "mlp", "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "run"), "-q"]
    code = cli_main(["train", "--dataset", f"imagefolder:{tmp_path / 'd'}", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{tmp_path / 'd' / 'dog' / 'notes.png'}: not an image" in err and "remove or replace" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


@contextlib.contextmanager
def deep_folder(top, depth: int):
    """top/d/d/.../d (depth levels), made one level at a time and removed bottom up afterwards
    (mkdir(parents=True) and shutil.rmtree, which pytest uses to clean up, both recurse)."""
    here = os.getcwd()
    os.chdir(top)
    try:
        for _ in range(depth):
            os.mkdir("d")
            os.chdir("d")
    finally:
        os.chdir(here)
    levels = [top.joinpath(*["d"] * n) for n in range(1, depth + 1)]
    try:
        yield levels[-1]
    finally:
        for level in reversed(levels):
            for entry in level.iterdir():
                if not entry.is_dir():
                    entry.unlink()
            level.rmdir()


def test_walk_files_goes_deeper_than_the_recursion_limit(tmp_path):
    with deep_folder(tmp_path, sys.getrecursionlimit() + 200) as deep:
        (deep / "x.png").write_bytes(b"x")
        (tmp_path / ".hidden.png").write_bytes(b"x")
        assert datasets.walk_files(tmp_path) == [deep / "x.png"]
