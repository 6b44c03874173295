"""Kill and resume: `cnnlab train` in a subprocess is SIGKILLed inside checkpoint writes and at
seeded random moments, or gets Ctrl-C in the middle of a write. Afterwards the run folder
loads (or says it has no complete epoch yet), no .part file is taken for a good one, and
`--resume` continues from the last complete epoch to exactly the uninterrupted result.

(tests/test_train.py covers Ctrl-C between epochs; these add SIGKILL and Ctrl-C mid-write.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tests.fuzzing import record

from cnnlab import checkpoint, runs
from cnnlab.cli import main
from cnnlab.config import make_config
from cnnlab.errors import CheckpointError
from cnnlab.train import fit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and SIGINT are POSIX"),
]

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 2
TRAIN = [
    "train",
    "--dataset",
    "fake",
    "--model",
    "mlp",
    "--batch-size",
    "32",
    "--device",
    "cpu",
    "--threads",
    "1",
    "-q",
]

# Runs `cnnlab ARGS` on the fake dataset. KILL_AT_WRITE=N makes the Nth run-folder write
# (io.atomic_write: config.json; epoch 0: weights, metrics.json, metrics.csv, resume.safetensors,
# resume.json; then per epoch those five and curves.png; after the last epoch README.md)
# end the process once its .part file is complete ("before-replace"), half written
# ("half-written"), or send itself Ctrl-C there ("sigint"). A test hook, in the test only.
LAUNCHER = """
import os, signal, sys
from pathlib import Path
from cnnlab import io
from cnnlab.data import datasets
from tests.conftest import write_fake_dataset
datasets.DATASETS["fake"] = write_fake_dataset(Path(sys.argv[1]))
kill_at, mode = int(os.environ.get("KILL_AT_WRITE", "0")), os.environ.get("KILL_MODE", "")
original, count = io.atomic_write, [0]
def _atomic(path, write):
    count[0] += 1
    if count[0] != kill_at:
        return original(path, write)
    def dying(part):
        write(part)
        if mode == "half-written":
            data = part.read_bytes()
            part.write_bytes(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGINT if mode == "sigint" else signal.SIGKILL)
    return original(path, dying)
io.atomic_write = _atomic
from cnnlab.cli import main
sys.exit(main(sys.argv[2:]))
"""


def launch(tmp_path: Path, args: list[str], **env) -> subprocess.Popen:
    environ = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]),
        CNNLAB_DATA=str(tmp_path / "data"),
        **env,
    )
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path / "data"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        cwd=tmp_path,
    )


def straight_run(tmp_path: Path) -> dict[str, torch.Tensor]:
    """The weights of the same run without interruption (in-process; the fixture's dataset)."""
    config = make_config(
        dataset="fake", model="mlp", batch_size=32, device="cpu", threads=1, epochs=EPOCHS
    )
    return {k: v.clone() for k, v in fit(config, tmp_path / "straight").model.state_dict().items()}


def check_folder_after_kill(run: Path) -> int:
    """The invariants of a run folder whatever moment the process died; returns epochs saved."""
    # a killed write leaves its .part (complete or half written) next to the previous good file,
    # or alone: loaders read only the final names, so it changes nothing below
    try:
        loaded = runs.load_run(run)
    except CheckpointError as e:
        assert "no complete epoch yet" in str(e), e
        epochs = 0
    else:
        epochs = len(loaded.metrics)
        assert epochs >= 1 and loaded.model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    if (run / runs.RESUME_TENSORS).exists():
        state = checkpoint.load_resume_state(run)
        # the resume state is written last: a kill between the weights and it leaves resume one
        # epoch behind the weights (that epoch is then trained again, to the same result)
        assert state["epoch"] == len(state["metrics"]) >= epochs - 1
    return epochs


def resume_and_compare(run: Path, reference: dict[str, torch.Tensor], capsys) -> None:
    """`cnnlab train --resume RUN` finishes the run; its weights equal the uninterrupted ones."""
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "-q"]) == 0, capsys.readouterr().err
    metrics = json.loads((run / runs.METRICS).read_text())
    assert [m["epoch"] for m in metrics] == list(range(1, EPOCHS + 1))
    resumed = runs.load_run(run).model.state_dict()
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), name
    assert not list(run.glob("*.part"))  # the resumed run's writes replaced the leftovers


@pytest.mark.parametrize(
    "write,mode",
    [
        (2, "before-replace"),  # the first weights: the run has no epoch at all yet
        (7, "half-written"),  # epoch 1's weights, half of the .part written
        (9, "half-written"),  # epoch 1's metrics.csv
        (11, "before-replace"),  # between resume.safetensors and resume.json of epoch 1
        (17, "half-written"),  # epoch 2's resume.json
    ],
)
def test_sigkill_inside_a_checkpoint_write(fake_dataset, tmp_path, capsys, write, mode):
    run = tmp_path / "run"
    proc = launch(
        tmp_path,
        [*TRAIN, "--epochs", str(EPOCHS), "--out", str(run)],
        KILL_AT_WRITE=str(write),
        KILL_MODE=mode,
    )
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, stderr
    saved = check_folder_after_kill(run)
    record("kill: SIGKILL inside a checkpoint write", f"folder consistent, {saved} epoch(s) saved")
    # died before the first resume state: the folder holds its config.json, and resuming
    # starts that run from epoch 0
    resume_and_compare(run, straight_run(tmp_path), capsys)


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_random_moments(fake_dataset, tmp_path, capsys, seed):
    """Kill a longer run at a seeded random delay after its first epoch line: mid-step mostly,
    sometimes mid-write. Then resume it to the end."""
    run = tmp_path / "run"
    epochs = 6
    proc = launch(
        tmp_path,
        [
            *TRAIN[:-1],
            "--epochs",
            str(epochs),
            "--batch-size",
            "8",
            "--schedule",
            "constant",
            "--out",
            str(run),
        ],
    )
    deadline = time.time() + 300
    for line in proc.stdout:
        if line.startswith("epoch 1/"):
            break
        assert time.time() < deadline, "training never finished an epoch"
    time.sleep(random.Random(seed).uniform(0, 2.0))
    proc.kill()
    proc.communicate(timeout=60)
    saved = check_folder_after_kill(run)
    record("kill: SIGKILL at a random moment", f"folder consistent, {saved} epoch(s) saved")
    assert main(["train", "--resume", str(run), "-q"]) == 0
    metrics = json.loads((run / runs.METRICS).read_text())
    assert [m["epoch"] for m in metrics] == list(range(1, epochs + 1))


def test_ctrl_c_during_a_checkpoint_write_finishes_the_write(fake_dataset, tmp_path, capsys):
    """SIGINT arriving inside epoch 1's resume.safetensors write: the epoch's files are all
    written, the CLI says how to resume, and resuming gives the uninterrupted weights."""
    run = tmp_path / "run"
    proc = launch(
        tmp_path,
        [*TRAIN, "--epochs", str(EPOCHS), "--out", str(run)],
        KILL_AT_WRITE="10",
        KILL_MODE="sigint",
    )
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "interrupted after 1 epoch(s)" in stderr and "Traceback" not in stderr
    assert not list(run.glob("*.part"))
    assert check_folder_after_kill(run) == 1 and checkpoint.load_resume_state(run)["epoch"] == 1
    record("kill: Ctrl-C inside a checkpoint write", "epoch completed, resumable")
    resume_and_compare(run, straight_run(tmp_path), capsys)
