"""Fuzzing the IDX reader: random bytes, mutated valid files, gzip-wrapped mutations.

The only allowed failure is DatasetFormatError; memory stays bounded (RLIMIT_AS, plus a
tracemalloc peak check on the Python/numpy side) whatever sizes a forged header declares.
"""

from __future__ import annotations

import gzip
import math
import shutil
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import learnable_images, write_fake_dataset
from tests.fuzzing import fuzz_settings, memory_cap, mutated, record

from cnnlab.data import idx, sources
from cnnlab.errors import DatasetFormatError

pytestmark = pytest.mark.fuzz

# bytes that a file of `n` bytes may make the reader hold: its data, one read chunk, numpy
PEAK_LIMIT = 40 << 20  # 16 MiB read chunk + the decoded data (the seeds are < 10 kB)
AS_HEADROOM = 256 << 20

IMAGES, LABELS = learnable_images(8, size=6)
SEEDS = {
    "images": idx.encode_idx(IMAGES),  # (8, 6, 6) uint8
    "labels": idx.encode_idx(LABELS),  # (8,) uint8
    "floats": idx.encode_idx(np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4)),
    "int16 4-D": idx.encode_idx(np.arange(24, dtype=np.int16).reshape(1, 2, 3, 4)),
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-idx") / "file-idx3-ubyte"


def read_all_ways(path, target: str) -> None:
    """Run every public reader on the file; count what read_idx made of it under `target`."""
    outcomes = []
    for read in (idx.read_idx, idx.read_images, lambda p: idx.read_labels(p, 10)):
        tracemalloc.start()
        try:
            with memory_cap(AS_HEADROOM):
                arr = read(path)
            # a successful read really matches the header it found
            assert arr.size == math.prod(arr.shape) and arr.flags.c_contiguous
            outcomes.append("ok")
        except DatasetFormatError as e:
            assert str(path) in str(e)  # the message names the file
            outcomes.append("DatasetFormatError")
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < PEAK_LIMIT, f"{peak} bytes allocated for a {path.stat().st_size}-byte file"
    if outcomes[0] == "ok":
        assert len(idx.raw_md5(path)) == 32  # so does the MD5 of a readable file
    record(target, outcomes[0])


@fuzz_settings()
@given(data=st.binary(max_size=600))
def test_random_bytes(scratch, data):
    scratch.write_bytes(data)
    read_all_ways(scratch, "IDX reader: random bytes")


@fuzz_settings()
@given(data=st.one_of(*(mutated(seed) for seed in SEEDS.values())))
def test_mutated_valid_files(scratch, data):
    scratch.write_bytes(data)
    read_all_ways(scratch, "IDX reader: mutated valid files")


@fuzz_settings()
@given(data=st.one_of(*(mutated(seed) for seed in SEEDS.values())), level=st.integers(0, 9))
def test_gzip_wrapped_mutations(scratch, data, level):
    """A mutated IDX body inside a valid gzip stream."""
    scratch.write_bytes(gzip.compress(data, compresslevel=level, mtime=0))
    read_all_ways(scratch, "IDX reader: gzip-wrapped mutations")


@fuzz_settings()
@given(data=st.one_of(*(mutated(gzip.compress(seed, mtime=0), hot=24) for seed in SEEDS.values())))
def test_mutated_gzip_streams(scratch, data):
    """Mutations of the compressed bytes: header, deflate stream, CRC and length trailer."""
    scratch.write_bytes(data)
    read_all_ways(scratch, "IDX reader: mutated gzip streams")


@pytest.mark.parametrize("dims", [(2**24, 2**24, 2**24), (2**24, 2**7, 1), (2**8, 2**12, 2**11)])
@pytest.mark.parametrize("gz", [False, True])
def test_forged_sizes_do_not_allocate(scratch, dims, gz):
    """A header declaring up to 2^72 bytes over a 12-byte body: refused or truncated, never
    allocated (the last case declares 2 GiB, just at the limit: it must read, not reserve)."""
    body = b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in dims) + b"x" * 12
    scratch.write_bytes(gzip.compress(body) if gz else body)
    with pytest.raises(DatasetFormatError, match="limit|truncated"):
        tracemalloc.start()
        try:
            with memory_cap(AS_HEADROOM):
                idx.read_idx(scratch)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert peak < PEAK_LIMIT
    record("IDX reader: forged 2^31..2^72-byte headers", "DatasetFormatError")


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    """A fake dataset under a data root, and its pristine files as a second source."""
    top = tmp_path_factory.mktemp("fuzz-root")
    info = write_fake_dataset(top / "root", n_train=20, n_test=10)
    shutil.copytree(top / "root" / info.folder / "raw", top / "pkg")
    srcs = [sources.RootFiles(), sources.DebianDirectory(str(top / "pkg"), "dataset-fake")]
    return info, top / "root", srcs


@fuzz_settings(scale=0.25)
@given(which=st.sampled_from(["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]), data=st.data())
def test_edited_root_files_are_rebuilt_out_loud(fake_root, which, data):
    """A root file edited in any way (a label changed in place too) is rebuilt and announced;
    an edit that changes no byte is neither."""
    info, root, srcs = fake_root
    path = root / info.folder / "raw" / which
    good = path.read_bytes()
    edited = data.draw(mutated(good, hot=24))
    path.write_bytes(edited)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sources.fetch(info.folder, info.resources, root, srcs)
    announced = [str(w.message) for w in caught if issubclass(w.category, sources.DataRepairWarning)]
    assert path.read_bytes() == good  # the official file again, whatever the edit
    if edited == good:
        assert result.source == "data root" and not announced
        record("data root: edited files rebuilt from the next source", "unchanged, not announced")
    else:
        assert announced == [f"{path} failed its MD5 check; rebuilt it from the {srcs[1].name}"]
        record("data root: edited files rebuilt from the next source", "rebuilt, announced")
