"""Distributed training: sharding, the process-group helpers, and real torchrun jobs on CPU.

The torchrun tests launch `torchrun --standalone --nproc_per_node 2` (gloo over loopback) as a
subprocess, the way a user would, and compare with a one-process run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab import distributed
from cnnlab.config import make_config
from cnnlab.data.batches import InMemoryBatches
from cnnlab.data.factory import load_batches
from cnnlab.data.loader import LoaderBatches
from cnnlab.errors import ConfigError
from cnnlab.train import fit

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
needs_torchrun = pytest.mark.skipif(
    not TORCHRUN.exists() or not torch.distributed.is_available(),
    reason="torch.distributed or the venv's torchrun is missing",
)


# --- sharding: every rank's batch i together is the one-process batch i ------------------------


def labelled(n: int):
    """n tiny images whose labels are their indices, so a batch names its samples."""
    return torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n)


def test_rank_batches_add_up_to_the_global_batch():
    x, y = labelled(103)
    whole = [t for _, t in InMemoryBatches(x, y, 8, shuffle=True, seed=4)]
    shards = [
        [t for _, t in InMemoryBatches(x, y, 4, shuffle=True, seed=4, rank=r, world_size=2)]
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 13  # 51 samples each: the odd one out is dropped
    for i, (a, b) in enumerate(zip(*shards, strict=True)):
        assert sorted(torch.cat([a, b]).tolist()) == sorted(whole[i][: len(a) + len(b)].tolist())


def test_uneven_shards_give_every_test_sample_to_one_rank():
    x, y = labelled(10)
    shards = [InMemoryBatches(x, y, 3, rank=r, world_size=3, even_shards=False) for r in range(3)]
    seen = [t for s in shards for _, t in s]
    assert sorted(torch.cat(seen).tolist()) == list(range(10))
    assert [s.num_samples for s in shards] == [4, 3, 3]
    with pytest.raises(ConfigError, match="rank 2 is outside"):
        InMemoryBatches(x, y, 3, rank=2, world_size=2)


class TinyFolder:
    """Stands in for an image-folder dataset: load_uint8(i) and targets, image i has value i."""

    def __init__(self, n: int):
        self.targets = torch.arange(n)

    def __len__(self) -> int:
        return len(self.targets)

    def load_uint8(self, i: int) -> torch.Tensor:
        return torch.full((1, 2, 2), i, dtype=torch.uint8)


def test_loader_path_uses_the_same_permutation_in_one_process_and_in_shards():
    ds = TinyFolder(50)
    one = LoaderBatches(ds, 10, (0.0,), (1.0,), shuffle=True, seed=3, subset=40, workers=0)
    one.set_epoch(2)
    order = torch.cat([y for _, y in one])
    # the one-process order is still randperm seeded by (seed, epoch): resume of old runs holds
    expected = torch.randperm(40, generator=torch.Generator().manual_seed(3 * 1_000_003 + 2))
    assert order.tolist() == expected.tolist()
    shards = []
    for r in (0, 1):
        b = LoaderBatches(
            ds, 5, (0.0,), (1.0,), shuffle=True, seed=3, subset=40, workers=0, rank=r, world_size=2
        )
        b.set_epoch(2)  # DistributedSampler.set_epoch underneath
        shards.append([y for _, y in b])
    for i, (a, b) in enumerate(zip(*shards, strict=True)):
        assert sorted(torch.cat([a, b]).tolist()) == sorted(order[10 * i : 10 * i + 10].tolist())
    test = [
        LoaderBatches(
            ds, 4, (0.0,), (1.0,), subset=45, workers=0, rank=r, world_size=2, even_shards=False
        )
        for r in (0, 1)
    ]
    assert sorted(torch.cat([y for s in test for _, y in s]).tolist()) == list(range(45))


def test_batch_size_is_global_and_must_split_evenly(fake_dataset):
    config = make_config(dataset="fake", device="cpu", batch_size=128)
    splits = load_batches(config, torch.device("cpu"), rank=1, world_size=4)
    train, test = splits.train, splits.test
    assert train.batch_size == 32 and train.num_samples == 150  # 600 images / 4 processes
    assert test.num_samples == 50
    with pytest.raises(ConfigError, match="use 126 or 129"):
        load_batches(config, torch.device("cpu"), rank=0, world_size=3)


# --- the process-group helpers ----------------------------------------------------------------


def test_outside_torchrun_everything_is_one_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.setup(torch.device("cpu"))
    assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (0, 1, False, True)
    assert not distributed.launched_by_torchrun() and distributed.is_main_process()
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, ctx, sync_bn=True) is model  # nothing to sync alone
    assert distributed.sum_across_ranks([torch.tensor(2.5), 3], torch.device("cpu")) == [2.5, 3.0]


def test_exit_worker_flushes_what_was_printed_and_keeps_the_exit_code():
    # os._exit skips the buffers' flush at shutdown: the helper must flush them itself
    code = (
        "import sys; from cnnlab import distributed; print('saved'); "
        "print('note', file=sys.stderr); distributed.exit_worker(3)"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "saved\n", "note\n")
    distributed.cleanup()  # no process group here: nothing to leave, so main() returns as usual
    assert not distributed.left_a_group()


def test_settings_that_cannot_work_distributed_say_so(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.launched_by_torchrun() and not distributed.is_main_process()
    with pytest.raises(ConfigError, match="mps"):
        distributed.setup(torch.device("mps"))
    with pytest.raises(ConfigError, match="positive number of seconds"):
        distributed.setup(torch.device("cpu"), timeout_s=0)
    ctx = distributed.DistContext(rank=0, world_size=2)
    with pytest.raises(ConfigError, match="--sync-bn needs CUDA"):
        distributed.wrap_model(torch.nn.BatchNorm1d(3), ctx, sync_bn=True)
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="RANK='x'"):
        distributed.env_rank()


# --- real jobs: torchrun, 2 processes, gloo on loopback ----------------------------------------


def run(cmd: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command with this checkout's cnnlab importable and one thread per process."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]),
        OMP_NUM_THREADS="1",
        CNNLAB_OFFLINE="1",
    )
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def torchrun(*args) -> list:
    return [TORCHRUN, "--standalone", "--nproc_per_node", "2", *args]


def max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


@pytest.mark.slow
@needs_torchrun
def test_two_processes_train_the_one_process_model_and_resume(tmp_path, real_root):
    """2 processes x 32 images = 1 process x 64 images per step: the same weights.

    DDP averages the two processes' gradients (each the mean over its 32 images), which is the
    mean over the 64 images that one process would see in the same step, because each rank
    takes every other sample of the same seeded permutation. So an MLP ends with the same
    weights up to float rounding (the sum is split differently). A BatchNorm model does not:
    each process normalises its 32 images by their own mean and variance, not the 64 images',
    so its updates differ slightly (--sync-bn fixes that on GPUs); see the image-folder test below.
    The distributed run also stops after epoch 1 and is resumed by a second torchrun.
    """
    settings = dict(
        model="mlp",
        train_subset=1024,
        test_subset=500,
        batch_size=64,
        schedule="constant",
        lr=0.002,
        device="cpu",
        data_root=str(real_root),
        threads=1,
    )  # one thread, as torchrun gives each process
    fit(make_config(**settings, epochs=2), tmp_path / "one")  # the one-process run, in pytest
    flags = [
        "train",
        "--model",
        "mlp",
        "--train-subset",
        "1024",
        "--test-subset",
        "500",
        "--batch-size",
        "64",
        "--schedule",
        "constant",
        "--lr",
        "0.002",
        "--device",
        "cpu",
        "--root",
        real_root,
        "--quiet",
    ]
    two = tmp_path / "two"
    first = run(torchrun("-m", "cnnlab", *flags, "--epochs", "1", "--out", two), tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("test accuracy") == 1  # only rank 0 prints
    resumed = run(
        torchrun("-m", "cnnlab", "train", "--resume", two, "--epochs", "2", "--quiet"), tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    # one run folder, written by rank 0 alone: nothing else in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    assert not list(two.glob("*.part"))
    assert max_weight_difference(tmp_path / "one", two) < 1e-5
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((two / "metrics.json").read_text())
    assert [r["epoch"] for r in m2] == [1, 2]
    for a, b in zip(m1, m2, strict=True):  # all-reduced: the global numbers, not rank 0's half
        assert a["test_acc"] == b["test_acc"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert m2[-1]["test_acc"] > 0.6  # it learns: 73.8 % after 2 epochs of 1024 images (chance 10 %)


def write_image_folder(root: Path, n: int = 400, classes: int = 4) -> Path:
    """PNG files in root/c<k>/: the learnable bars of tests/conftest.py as an image folder."""
    from PIL import Image
    from tests.conftest import learnable_images

    images, labels = learnable_images(n, num_classes=classes, seed=7)
    for i, (image, k) in enumerate(zip(images, labels, strict=True)):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / f"c{k}" / f"{i}.png")
    return root


@pytest.mark.slow
@needs_torchrun
def test_batchnorm_model_on_an_image_folder_follows_the_same_loss_curve(tmp_path):
    """With BatchNorm the 2-process run is close to the 1-process one, not equal (see above).

    An image folder goes through the DataLoader path: DistributedSampler with set_epoch.
    """
    folder = write_image_folder(tmp_path / "images")
    settings = dict(
        dataset=f"imagefolder:{folder}",
        model="cnn",
        batch_size=32,
        epochs=2,
        model_kwargs={"width": 4, "dropout": 0},
        device="cpu",
    )
    flags = [
        "train",
        "--dataset",
        settings["dataset"],
        "--model",
        "cnn",
        "--model-kwargs",
        '{"width": 4, "dropout": 0}',
        "--batch-size",
        "32",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ]
    two = run(torchrun("-m", "cnnlab", *flags, "--out", tmp_path / "two"), tmp_path)
    assert two.returncode == 0, two.stderr
    fit(make_config(**settings, threads=1), tmp_path / "one")  # the one-process run, in pytest
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for a, b in zip(m1, m2, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.15, abs=0.01)  # 0.528/0.529
        assert abs(a["test_acc"] - b["test_acc"]) <= 0.1
    assert m1[-1]["train_loss"] < 0.7 * m1[0]["train_loss"]  # both learn
    assert m2[-1]["train_loss"] < 0.7 * m2[0]["train_loss"]
    assert max_weight_difference(tmp_path / "one", tmp_path / "two") > 0  # not bit-equal


@pytest.mark.slow
@needs_torchrun
def test_a_failing_rank_ends_the_job_with_its_error(tmp_path):
    """Rank 1 raises mid-epoch while rank 0 waits for it in the all-reduce: no hang."""
    from tests.dist_worker import INJECTED

    flags = [
        "train",
        "--dataset",
        "fake",
        "--model",
        "mlp",
        "--batch-size",
        "16",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--dist-timeout",
        "60",
        "--out",
        tmp_path / "run",
    ]
    start = time.monotonic()
    proc = run(
        torchrun(REPO / "tests" / "dist_worker.py", tmp_path / "data", 1, *flags), tmp_path, timeout=240
    )
    elapsed = time.monotonic() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert f"cnnlab: error (rank 1 of 2): {INJECTED.format(rank=1)}" in proc.stderr  # named rank
    assert "test accuracy" not in proc.stdout  # rank 0 did not finish on its own
    assert elapsed < 200  # torchrun stopped rank 0 rather than waiting for a timeout
