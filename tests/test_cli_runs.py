"""`cnnlab runs` and `cnnlab.runs.list_runs`: complete, resumable, config-only and corrupt runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from cnnlab import runs
from cnnlab.cli import main
from cnnlab.config import make_config
from cnnlab.train import TrainingInterrupted, fit


def quick(**kw):
    settings = dict(dataset="fake", model="mlp", device="cpu", threads=1, batch_size=32, epochs=1)
    settings.update(kw)
    return make_config(**settings)


@pytest.fixture
def run_root(fake_dataset, tmp_path):
    """runs/ with a complete run (nested one level), a resumable one, a config-only one and
    three broken ones."""
    root = tmp_path / "runs"
    fit(quick(val_split=100), root / "group" / "done")

    def stop_in_epoch_two(event):
        if event["event"] == "epoch_start" and event["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        fit(quick(epochs=3, schedule="constant"), root / "half", callback=stop_in_epoch_two)
    (root / "fresh").mkdir()
    shutil.copy(root / "group" / "done" / runs.CONFIG, root / "fresh" / runs.CONFIG)
    shutil.copytree(root / "group" / "done", root / "bad-weights")
    (root / "bad-weights" / runs.WEIGHTS).write_bytes(b"\xff" * 64)
    shutil.copytree(root / "group" / "done", root / "bad-metrics")
    (root / "bad-metrics" / runs.METRICS).write_text("[{")
    (root / "no-resume").mkdir()
    for name in (runs.CONFIG, runs.WEIGHTS, runs.METRICS):
        shutil.copy(root / "half" / name, root / "no-resume" / name)
    (root / ".hidden" / "x").mkdir(parents=True)
    shutil.copy(root / "fresh" / runs.CONFIG, root / ".hidden" / "x" / runs.CONFIG)
    (root / "notes").mkdir()  # not a run folder
    return root


def test_list_runs_reads_each_state(run_root):
    found = {s.name: s for s in runs.list_runs(run_root)}
    assert sorted(found) == [
        "bad-metrics",
        "bad-weights",
        "fresh",
        "group/done",
        "half",
        "no-resume",
    ]
    done = found["group/done"]
    metrics = json.loads((run_root / "group" / "done" / runs.METRICS).read_text())
    assert (done.state, done.model, done.dataset) == ("complete", "mlp", "fake")
    assert (done.epochs_done, done.epochs_planned) == (1, 1)
    assert done.val_acc == metrics[-1]["val_acc"] and done.test_acc == metrics[-1]["test_acc"]
    on_disk = sum(p.stat().st_size for p in (run_root / "group" / "done").iterdir())
    assert done.size_bytes == on_disk and done.modified > 0 and done.problem is None
    half = found["half"]
    assert (half.state, half.epochs_done, half.epochs_planned) == ("resumable", 1, 3)
    assert found["fresh"].state == "before-first-epoch" and found["fresh"].epochs_done == 0
    assert found["bad-weights"].state == "broken" and "weights header" in found["bad-weights"].problem
    assert found["bad-metrics"].state == "broken" and "metrics.json" in found["bad-metrics"].problem
    assert found["no-resume"].state == "broken" and "1 of 3" in found["no-resume"].problem


def test_list_runs_of_a_missing_folder_is_empty(tmp_path):
    assert runs.list_runs(tmp_path / "nothing") == []


def test_a_run_interrupted_during_epoch_one_is_before_its_first_epoch(fake_dataset, tmp_path):
    def stop(event):
        if event["event"] == "step":
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        fit(quick(), tmp_path / "runs" / "early", callback=stop)  # epoch-0 weights are on disk
    (summary,) = runs.list_runs(tmp_path / "runs")
    assert (summary.state, summary.epochs_done, summary.model) == ("before-first-epoch", 0, "mlp")


def test_cli_runs_table_and_json(run_root, capsys):
    assert main(["runs", str(run_root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["run", "model", "dataset", "epochs"]
    done = next(line for line in lines if line.startswith("group/done"))
    assert " mlp " in done and " 1/1 " in done and "complete" in done and "%" in done
    assert "resumable" in next(line for line in lines if line.startswith("half"))
    assert main(["runs", str(run_root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["state"] for r in rows}["fresh"] == "before-first-epoch"
    assert all(set(r) >= {"name", "path", "model", "epochs_done", "val_acc", "size_bytes"} for r in rows)


def test_cli_runs_says_when_there_are_none(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert "no run folders under" in capsys.readouterr().out


def test_cli_runs_reads_every_state_without_importing_torch(run_root):
    # a fresh interpreter: JSON files and weights headers only, so the listing starts at once
    probe = (
        "import json, sys\n"
        "from cnnlab.cli import main\n"
        "main(['runs', sys.argv[1], '--json'])\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(run_root)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr
    states = {r["name"]: r["state"] for r in json.loads(done.stdout)}
    assert states["group/done"] == "complete" and states["bad-weights"] == "broken", states
