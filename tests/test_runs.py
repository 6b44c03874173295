"""The run folder: weights round trip, self-description, and every way a file can be broken."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.checkpoint import load_resume_state, save_resume_state
from cnnlab.data.datasets import FASHION_MNIST, MNIST
from cnnlab.errors import CheckpointError
from cnnlab.models import get_model
from cnnlab.runs import load_run, run_metadata, save_weights


def saved_run(tmp_path, name="cnn", info=MNIST, **kwargs):
    torch.manual_seed(0)
    model = get_model(name, info.image_shape, info.num_classes, **kwargs)
    save_weights(tmp_path / "model.safetensors", model, run_metadata(name, kwargs, info))
    return model


def test_weights_round_trip_with_metadata(tmp_path):
    model = saved_run(tmp_path, "lesson-cnn", FASHION_MNIST, channels=(6, 1))
    (tmp_path / "metrics.json").write_text(json.dumps([{"epoch": 1, "test_acc": 0.5}]))
    run = load_run(tmp_path)
    assert run.model_name == "lesson-cnn" and run.model_kwargs == {"channels": [6, 1]}
    assert run.dataset == "fashion-mnist" and run.classes[0] == "T-shirt/top"
    assert run.input_shape == (1, 28, 28) and run.mean == (0.2860,) and run.style == "fit"
    assert run.metrics == [{"epoch": 1, "test_acc": 0.5}] and run.config is None
    assert not run.model.training
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    assert torch.equal(run.model(x), model(x))
    assert load_run(tmp_path / "model.safetensors").model_name == "lesson-cnn"


def test_missing_folder_or_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such run folder"):
        load_run(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not found"):
        load_run(tmp_path)


def test_truncated_weights(tmp_path):
    saved_run(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    for size in (0, 7, 100, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            load_run(tmp_path)


def test_byte_flipped_weights(tmp_path):
    saved_run(tmp_path)
    path = tmp_path / "model.safetensors"
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little") + 8
    for pos in (len(data) - 5, header + 3, (header + len(data)) // 2, 20):
        flipped = bytearray(data)
        flipped[pos] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError):
            load_run(tmp_path)


def test_wrong_shape_and_unknown_model(tmp_path):
    model = get_model("mlp", hidden=(32,))
    save_weights(tmp_path / "model.safetensors", model, run_metadata("mlp", {"hidden": [64]}, MNIST))
    with pytest.raises(CheckpointError, match="do not fit model 'mlp'"):
        load_run(tmp_path)
    save_weights(tmp_path / "model.safetensors", model, run_metadata("vgg99", {}, MNIST))
    with pytest.raises(CheckpointError, match="cannot rebuild.*unknown model 'vgg99'"):
        load_run(tmp_path)


def test_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not written by cnnlab"):
        load_run(tmp_path)


def test_resume_state_round_trip(tmp_path):
    model = get_model("cnn")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.01, total_steps=50)
    state = {
        "epoch": 3,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": torch.get_rng_state(),
        "note": (1, "a", None),
    }
    save_resume_state(tmp_path, state)
    back = load_resume_state(tmp_path)
    assert back["epoch"] == 3 and back["note"] == (1, "a", None)
    assert torch.equal(back["rng"], state["rng"])
    assert back["scheduler"] == sched.state_dict()
    opt2 = torch.optim.Adam(model.parameters(), lr=0.01)
    opt2.load_state_dict(back["optimizer"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for k in a["state"]:
        for name, t in a["state"][k].items():
            assert torch.equal(t, b["state"][k][name])


def test_resume_state_is_one_file(tmp_path):
    """resume.json is a readable copy: a kill between the two writes, or an edit of the copy,
    cannot split the state; an edit of the real one (resume.safetensors) is detected."""
    save_resume_state(tmp_path, {"epoch": 1, "x": torch.ones(2)})
    save_resume_state(tmp_path, {"epoch": 2, "x": torch.zeros(2)})
    doc = json.loads((tmp_path / "resume.json").read_text())
    assert doc["epoch"] == 2
    doc["epoch"] = 1
    (tmp_path / "resume.json").write_text(json.dumps(doc))
    assert load_resume_state(tmp_path)["epoch"] == 2
    (tmp_path / "resume.json").unlink()
    assert torch.equal(load_resume_state(tmp_path)["x"], torch.zeros(2))
    data = (tmp_path / "resume.safetensors").read_bytes()
    (tmp_path / "resume.safetensors").write_bytes(data.replace(b'\\"epoch\\": 2', b'\\"epoch\\": 1', 1))
    with pytest.raises(CheckpointError, match="metadata does not match"):
        load_resume_state(tmp_path)
