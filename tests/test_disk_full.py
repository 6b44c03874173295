"""Disk full: a run-folder write that fails (ENOSPC mid-write, or EFBIG under RLIMIT_FSIZE)
leaves every file already in the folder as it was, and `cnnlab train` prints one clear line
(no traceback), exits 2, and can be resumed once there is space again.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.fuzzing import record

from cnnlab import checkpoint, io, runs
from cnnlab.cli import main
from cnnlab.config import make_config
from cnnlab.train import fit

EPOCHS = 3
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
    "--epochs",
    str(EPOCHS),
    "-q",
]
RUN_FILES = (
    runs.WEIGHTS,
    runs.METRICS,
    runs.METRICS_CSV,
    runs.CONFIG,
    runs.RESUME_TENSORS,
    runs.RESUME_JSON,
)


def fail_nth_write(monkeypatch: pytest.MonkeyPatch, n: int) -> dict[str, bytes]:
    """Make the nth run-folder write (io.atomic_write) hit a full disk half way through its .part.

    Returns a dict filled, at that moment, with the bytes of every file already in the folder.
    """
    original, count, snapshot = io.atomic_write, [0], {}

    def _atomic(path, write):
        count[0] += 1
        if count[0] != n:
            return original(path, write)

        def full_disk(part):
            write(part)
            data = part.read_bytes()
            part.write_bytes(data[: len(data) // 2])
            for name in RUN_FILES:
                if (part.parent / name).is_file():
                    snapshot[name] = (part.parent / name).read_bytes()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return original(path, full_disk)

    monkeypatch.setattr(io, "atomic_write", _atomic)
    return snapshot


# writes: 1 config.json; epoch 0: 2 weights, 3 metrics.json, 4 metrics.csv, 5 resume.safetensors,
# 6 resume.json; epoch e >= 1: 1+6e weights, 2+6e metrics.json, 3+6e metrics.csv,
# 4+6e resume.safetensors, 5+6e resume.json, 6+6e curves; after the last epoch README.md
@pytest.mark.parametrize(
    "write,what",
    [
        (2, "the first weights"),
        (13, "epoch 2's weights"),
        (14, "epoch 2's metrics.json"),
        (15, "epoch 2's metrics.csv"),
        (16, "epoch 2's resume.safetensors"),
        (17, "epoch 2's resume.json"),
        (18, "epoch 2's curves.png"),
    ],
)
def test_full_disk_keeps_the_previous_files(fake_dataset, tmp_path, capsys, write, what):
    run = tmp_path / "run"
    with pytest.MonkeyPatch.context() as full:
        before = fail_nth_write(full, write)
        assert main([*TRAIN, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnlab: error: "), err  # one line
    assert "No space left on device" in err and f"--resume {run}" in err and "Traceback" not in err
    assert not list(run.glob("*.part"))  # the half-written part was removed
    for name, data in before.items():  # everything already there is byte for byte the same
        assert (run / name).read_bytes() == data, name
    record("disk full: ENOSPC half way through a checkpoint write", f"{what}: previous files intact")
    # space again (the context above ended)
    if write == 2:  # nothing was saved: start again
        assert main([*TRAIN, "--out", str(run), "--overwrite"]) == 0
        return
    assert checkpoint.load_resume_state(run)["epoch"] in (1, 2)  # 2: resume.json (a copy) failed
    assert main(["train", "--resume", str(run), "-q"]) == 0
    assert [m["epoch"] for m in json.loads((run / runs.METRICS).read_text())] == [1, 2, 3]
    config = make_config(
        dataset="fake", model="mlp", batch_size=32, device="cpu", threads=1, epochs=EPOCHS
    )
    straight = fit(config, tmp_path / "straight").model.state_dict()
    resumed = runs.load_run(run).model.state_dict()
    assert all(torch.equal(resumed[k], v) for k, v in straight.items())


REPO = Path(__file__).resolve().parents[1]
LAUNCHER = """
import sys
from pathlib import Path
from cnnlab.data import datasets
from tests.conftest import write_fake_dataset
datasets.DATASETS["fake"] = write_fake_dataset(Path(sys.argv[1]))
from cnnlab.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_file_size_limit_in_a_real_process(fake_dataset, tmp_path):
    """The OS refuses the write (EFBIG): RLIMIT_FSIZE above the data files (470 kB) but below
    the weights (970 kB)."""
    data = tmp_path / "data"
    limit = 700 * 1024

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]), CNNLAB_DATA=str(data)
    )
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(data), *TRAIN, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        preexec_fn=limit_file_size,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), proc.stderr
    assert "File too large" in lines[0] and "Traceback" not in proc.stderr
    assert not list((tmp_path / "run").glob("*.part"))
    assert not (tmp_path / "run" / runs.WEIGHTS).exists()
    record("disk full: RLIMIT_FSIZE below the weights size (real process)", "one-line error, exit 2")
