"""Run logs: metrics.csv in every run folder (step and epoch rows, kept across a resume) and
TensorBoard event files with `tensorboard=True`."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys

import pytest

from cnnlab import run_logs, runs
from cnnlab.config import make_config
from cnnlab.errors import ConfigError
from cnnlab.train import TrainingInterrupted, fit

# steps are logged every 20 and at the last of an epoch: 600 fake training images at batch 8 are
# 75 steps; holding out 100 for validation leaves 63 (at batch 32: 16)
LOGGED = [20, 40, 60, 75]
LOGGED_WITH_VAL = [20, 40, 60, 63]


def quick(**kw):
    settings = dict(dataset="fake", model="mlp", device="cpu", threads=1, batch_size=8, epochs=2)
    settings.update(kw)
    return make_config(**settings)


def read_csv(run) -> list[dict]:
    with open(run / runs.METRICS_CSV, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == run_logs.COLUMNS
        return list(reader)


def test_metrics_csv_has_a_row_per_logged_step_and_per_epoch(fake_dataset, tmp_path):
    run = tmp_path / "run"
    fit(quick(val_split=100), run)
    rows = read_csv(run)
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(steps) == 2 * len(LOGGED_WITH_VAL) and len(epochs) == 2
    assert [int(r["step"]) for r in steps] == LOGGED_WITH_VAL * 2
    assert [int(r["epoch"]) for r in steps] == [1] * 4 + [2] * 4
    for r in steps:
        assert 0 <= float(r["acc"]) <= 1 and float(r["loss"]) > 0 and float(r["lr"]) > 0
        assert float(r["images_per_s"]) > 0 and r["train_acc"] == ""
    metrics = json.loads((run / runs.METRICS).read_text())
    for row, m in zip(epochs, metrics, strict=True):
        assert int(row["epoch"]) == m["epoch"] and float(row["train_acc"]) == m["train_acc"]
        assert float(row["val_acc"]) == m["val_acc"] and float(row["seconds"]) == m["seconds"]
    # with a validation split the test set is seen once: only the last epoch row has test_*
    assert epochs[0]["test_acc"] == "" and float(epochs[1]["test_acc"]) == metrics[-1]["test_acc"]
    assert rows.index(epochs[0]) == 4  # epoch 1's steps come first, then its epoch row


def test_step_rows_read_back_as_numbers_and_bad_rows_are_skipped(fake_dataset, tmp_path):
    run = tmp_path / "run"
    fit(quick(), run)
    steps = run_logs.read_step_rows(run / runs.METRICS_CSV)
    assert [(s["epoch"], s["step"]) for s in steps] == [(e, k) for e in (1, 2) for k in LOGGED]
    assert all(isinstance(s["loss"], float) and 0 <= s["acc"] <= 1 for s in steps)
    text = (run / runs.METRICS_CSV).read_text().splitlines()
    bad = ["step,1,x,0.5,0.5", "step,0,3,0.5,0.5", "step,1,3,nan,0.5", "step,1,3", "epoch,1,75,1,1"]
    (run / "tampered.csv").write_text("\n".join([*text[:2], *bad, "\x00,,,", *text[2:]]) + "\n")
    assert run_logs.read_step_rows(run / "tampered.csv") == steps
    assert run_logs.read_step_rows(run / "tampered.csv", limit=3) == steps[:3]
    (run / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    assert run_logs.read_step_rows(run / "binary.csv") == []
    assert run_logs.read_step_rows(run / "absent.csv") == []


def test_a_resumed_run_keeps_every_step_row(fake_dataset, tmp_path):
    run = tmp_path / "run"
    fit(quick(epochs=1, schedule="constant"), run)
    first = read_csv(run)
    fit(quick(epochs=3, schedule="constant"), resume_from=run)
    rows = read_csv(run)
    assert rows[: len(first)] == first  # epoch 1's rows as they were
    steps = [r for r in rows if r["kind"] == "step"]
    assert [int(r["epoch"]) for r in steps] == [1] * 4 + [2] * 4 + [3] * 4
    assert [int(r["step"]) for r in steps] == LOGGED * 3
    assert [r["kind"] for r in rows].count("epoch") == 3


def test_an_interrupted_epoch_leaves_no_step_rows_behind(fake_dataset, tmp_path):
    """Ctrl-C in epoch 2: the resume state holds epoch 1's steps only, so the resumed CSV has
    each step once."""
    run = tmp_path / "run"

    def stop_in_epoch_two(event):
        if event["event"] == "step" and event["epoch"] == 1 and event["step"] == 40:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        fit(quick(schedule="constant"), run, callback=stop_in_epoch_two)
    assert len(read_csv(run)) == 5  # epoch 1: four steps and its epoch row
    fit(quick(schedule="constant"), resume_from=run)
    steps = [(r["epoch"], r["step"]) for r in read_csv(run) if r["kind"] == "step"]
    assert len(steps) == len(set(steps)) == 8


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs cnnlab[tensorboard]")
def test_tensorboard_event_files_hold_the_scalars(fake_dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    fit(quick(batch_size=32, tensorboard=True, val_split=100), run)
    events = sorted(run.glob("events.out.tfevents.*"))
    assert events, list(run.iterdir())
    tags: dict[str, list] = {}
    images = []
    for path in events:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            tags.setdefault(tag, []).extend(acc.Scalars(tag))
        images += acc.Tags()["images"]
    assert [e.step for e in tags["step/loss"]] == [16, 32]  # epoch * steps + step
    assert [e.step for e in tags["epoch/acc_val"]] == [1, 2]
    assert len(tags["epoch/acc_test"]) == 1  # the test set once, after the last epoch
    metrics = json.loads((run / runs.METRICS).read_text())
    assert tags["epoch/acc_train"][-1].value == pytest.approx(metrics[-1]["train_acc"])
    assert tags["final/test_acc"][0].value == pytest.approx(metrics[-1]["test_acc"])
    assert "test/confusion" in images


def test_tensorboard_without_the_package_is_one_config_error(fake_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'cnnlab\[tensorboard\]'"):
        fit(quick(tensorboard=True), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written
