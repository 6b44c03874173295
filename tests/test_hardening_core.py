"""Holes a hostile probe found in training, evaluation and run folders, each closed at its cause.

Each test failed before its fix: overflowing settings were tracebacks, an edited config.json
gave NaN with exit 0, OneCycle divided by zero at 4 steps, a huge batch silently became one
batch, a shared run folder could declare inputs that need gigabytes, and a Ctrl-C during
start-up behaved differently from one a second later.
"""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab import io, runs
from cnnlab.cli import main
from cnnlab.config import make_config
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.evaluation import evaluate_run
from cnnlab.models import get_model, safe_batch_size
from cnnlab.train import fit

QUICK = dict(dataset="fake", model="mlp", device="cpu", threads=1, batch_size=32, epochs=1)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"lr": 1e308}, "lr must be a number in"),
        ({"lr": float("inf")}, "lr must be a number in"),
        ({"weight_decay": 1e308}, "weight decay must be in"),
        ({"weight_decay": float("inf")}, "weight decay must be in"),
        ({"batch_size": 10_000_000}, "batch size must be >= 1 and <= 65536"),
        ({"epochs": 10**9}, "epochs must be >= 1 and <= 10000"),
        ({"tta": "x"}, "tta must be a whole number"),
        ({"rotate": float("nan")}, "rotate must be"),
        ({"val_split": -1}, "val split must be"),
    ],
)
def test_overflowing_settings_are_one_line(settings, match):
    with pytest.raises(ConfigError, match=match):
        make_config(**settings)


def test_onecycle_with_four_steps_trains(fake_dataset):
    """600 images at batch 150: four steps in all (OneCycleLR divided by zero there)."""
    result = fit(make_config(**{**QUICK, "batch_size": 150}))
    assert len(result.metrics) == 1 and result.final["train_loss"] > 0


def test_a_batch_larger_than_the_training_set_is_refused(fake_dataset):
    with pytest.raises(ConfigError, match="more than the 100 training images; use at most 100"):
        fit(make_config(**{**QUICK, "batch_size": 128, "train_subset": 100}))


@pytest.mark.parametrize("edit", [{"tta": -1}, {"tta": "x"}, "a JSON string", {"tta": True}])
def test_eval_refuses_an_edited_config_json(fake_dataset, tmp_path, edit):
    fit(make_config(**QUICK), tmp_path / "run")
    config = json.loads((tmp_path / "run" / runs.CONFIG).read_text())
    io.write_json(tmp_path / "run" / runs.CONFIG, {**config, **edit} if isinstance(edit, dict) else edit)
    with pytest.raises(CheckpointError, match="config.json: 'tta' must be a whole number 0..8"):
        evaluate_run(tmp_path / "run", device="cpu")


def test_declared_inputs_that_need_gigabytes_are_refused_or_batched_small(tmp_path):
    model = get_model("mlp", (1, 28, 28), 10, hidden=[8])
    meta = runs.run_metadata("mlp", {"hidden": [8]}, _info((1, 2048, 2048)))
    runs.save_weights(tmp_path / runs.WEIGHTS, model, meta)
    with pytest.raises(CheckpointError, match="over the limit of 4 channels and 512x512 pixels"):
        runs.load_run(tmp_path)
    big = get_model("resnet", (1, 512, 512), 10)
    assert safe_batch_size(big, (1, 512, 512), 64) < 8  # a batch stays within its budget
    assert safe_batch_size(get_model("cnn", (1, 28, 28), 10), (1, 28, 28), 500) == 500


def _info(shape):
    from dataclasses import replace

    from cnnlab.data.datasets import MNIST

    return replace(MNIST, image_shape=shape)


def test_ctrl_c_during_start_up_says_what_was_saved(fake_dataset, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cnnlab.train.load_batches", interrupted)
    out = tmp_path / "run"
    args = ["train", "--dataset", "fake", "--model", "mlp", "--device", "cpu", "--out", str(out), "-q"]
    assert main(args) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cnnlab: interrupted before anything was saved; start the run again"]


def test_resume_of_a_folder_with_only_its_config_starts_from_epoch_0(fake_dataset, tmp_path, capsys):
    """A run killed between writing config.json and its first save resumes from epoch 0."""
    config = make_config(**{**QUICK, "epochs": 2})
    reference = fit(config).model.state_dict()
    out = tmp_path / "run"
    from dataclasses import asdict

    io.write_json(out / runs.CONFIG, asdict(config))
    assert main(["train", "--resume", str(out), "-q"]) == 0, capsys.readouterr().err
    assert [m["epoch"] for m in json.loads((out / runs.METRICS).read_text())] == [1, 2]
    resumed = runs.load_run(out).model.state_dict()
    assert all(torch.equal(resumed[k], v) for k, v in reference.items())


def test_train_out_that_cannot_be_a_folder_says_so(fake_dataset, tmp_path, capsys):
    """`--out` under a regular file (as root, a chmod 555 folder is still writable)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = ["train", "--dataset", "fake", "--model", "mlp", "--device", "cpu", "-q"]
    assert main([*args, "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "choose a folder you can write to with --out" in err[0], err
    assert "free some space" not in err[0]
