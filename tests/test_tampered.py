"""Tampered run folders: each gives a CheckpointError naming the problem, and nothing executes.

tests/test_runs.py already covers truncation, flipped bytes, a wrong kwargs shape and an
unknown model; here the edits an attacker makes on purpose (keeping the digests valid), a
forged header length, a pickle renamed .safetensors, and the regressions the fuzzers found.
"""

from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch
from tests.fuzzing import memory_cap, record

from cnnlab import checkpoint, runs, tensorfile
from cnnlab.checkpoint import load_resume_state, save_resume_state
from cnnlab.cli import main
from cnnlab.data.datasets import MNIST
from cnnlab.errors import CheckpointError
from cnnlab.models import get_model
from cnnlab.runs import load_run, run_metadata, save_weights


def saved_run(folder, name="mlp", kwargs=None):
    kwargs = {"hidden": [8]} if kwargs is None else kwargs
    torch.manual_seed(0)
    model = get_model(name, MNIST.image_shape, MNIST.num_classes, **kwargs)
    save_weights(folder / runs.WEIGHTS, model, run_metadata(name, kwargs, MNIST))
    return model


def resave(folder, edit_tensors=None, edit_meta=None):
    """Rewrite model.safetensors with edited tensors/metadata and *valid* digests (on purpose)."""
    tensors, meta = tensorfile.load_tensors(folder / runs.WEIGHTS)
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        edit_meta(meta)
    for key in ("tensors_sha256", "metadata_sha256"):
        meta.pop(key, None)
    tensorfile.save_tensors(folder / runs.WEIGHTS, tensors, meta)


def expect(folder, match: str, case: str) -> None:
    with memory_cap(512 << 20), pytest.raises(CheckpointError, match=match) as err:
        load_run(folder)
    assert str(folder) in str(err.value)
    record(f"tampered weights: {case}", "CheckpointError")


def test_wrong_shape(tmp_path):
    saved_run(tmp_path)
    resave(tmp_path, lambda t: t.update({"classifier.1.weight": torch.zeros(8, 783)}))
    expect(tmp_path, "do not fit model 'mlp'.*size mismatch", "a tensor of the wrong shape")


def test_missing_tensor(tmp_path):
    saved_run(tmp_path)
    resave(tmp_path, lambda t: t.pop("classifier.3.bias"))
    expect(tmp_path, "do not fit.*Missing key.*classifier.3.bias", "a missing tensor")


def test_extra_tensors(tmp_path):
    saved_run(tmp_path)
    resave(tmp_path, lambda t: t.update({"backdoor.weight": torch.ones(3), "x": torch.ones(1)}))
    expect(tmp_path, "do not fit.*Unexpected key.*backdoor.weight", "extra tensors")


def test_metadata_naming_an_unknown_model(tmp_path):
    saved_run(tmp_path)
    resave(tmp_path, edit_meta=lambda m: m.update(model_name="os.system"))
    expect(tmp_path, "cannot rebuild.*unknown model 'os.system'", "metadata naming an unknown model")


def test_metadata_edited_without_the_digest(tmp_path):
    """A changed mean (0.1307 -> 0.1306) would silently change every prediction: refused."""
    saved_run(tmp_path)
    path = tmp_path / runs.WEIGHTS
    data = path.read_bytes()
    assert data.count(b"0.1307") == 1
    path.write_bytes(data.replace(b"0.1307", b"0.1306"))
    expect(tmp_path, "metadata does not match the SHA-256", "metadata edited, digest left")


@pytest.mark.parametrize("length", [2**40, 2**63, 2**64 - 1])
def test_forged_header_length(tmp_path, length):
    """Read without allocating: the Rust parser checks the length against the file size."""
    saved_run(tmp_path)
    path = tmp_path / runs.WEIGHTS
    path.write_bytes(struct.pack("<Q", length) + path.read_bytes()[8:])
    expect(tmp_path, "not a valid safetensors file", "a 2^40..2^64-byte header length")


class WritesAMarker:
    """Unpickling this calls os.system: what a hostile 'weights' file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_pickle_renamed_safetensors_never_runs(tmp_path, how, capsys):
    marker = tmp_path / "pwned"
    folder = tmp_path / "run"
    folder.mkdir()
    payload = {"state_dict": WritesAMarker(marker)}
    if how == "torch.save":
        torch.save(payload, folder / runs.WEIGHTS)  # a zip holding data.pkl
    else:
        (folder / runs.WEIGHTS).write_bytes(pickle.dumps(payload, protocol=2))
    (folder / runs.RESUME_TENSORS).write_bytes((folder / runs.WEIGHTS).read_bytes())
    expect(folder, "not a valid safetensors file", f"a pickle ({how}) renamed .safetensors")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_resume_state(folder)
    for argv in (
        ["eval", str(folder)],
        ["shapes", "model", str(folder)],
        ["train", "--resume", str(folder)],
    ):
        assert main(argv) == 2
        assert "not a valid safetensors file" in capsys.readouterr().err
    assert not marker.exists()  # nothing of the file was executed


# --- regressions from the fuzzers (tests/test_fuzz_runs.py) ---------------------------------


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("mean", '":"', "'mean' is not 1 finite numbers"),  # was ValueError from float(":")
        ("mean", "null", "'mean' is not 1 finite numbers"),  # was TypeError
        ("mean", "[]", "'mean' is not 1 finite numbers"),  # was accepted: Run with no mean
        ("std", "[0]", "'std' has a value outside"),
        ("std", "[5e-324]", "'std' has a value outside"),  # was nan% with exit 0
        ("std", "[NaN]", "'std' is not 1 finite numbers"),
        ("input_shape", "[1, 2, 2]", "do not fit"),
        ("input_shape", '"abc"', "'input_shape'"),
        ("classes", '["only one"]', "'classes'"),
        ("model_kwargs", "[]", "'model_kwargs' is not a JSON object"),
        ("model_kwargs", '{"hidden": [1000000000]}', "cannot rebuild.*over the limit"),  # was 3 TB
        ("model_kwargs", '{"hidden": [100000, 100000]}', "cannot rebuild.*over the limit"),
        ("model_name", "resnet", "cannot rebuild.*bad option"),
        ("model_kwargs", "[" * 100_000 + "]" * 100_000, "not valid JSON"),  # was RecursionError
    ],
)
def test_hostile_metadata_values(tmp_path, key, value, match):
    saved_run(tmp_path)
    resave(tmp_path, edit_meta=lambda m: m.update({key: value}))
    expect(tmp_path, match, "metadata values of the wrong type or size (fuzz regressions)")


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("model_kwargs", '{"width": Infinity}', "bad option"),  # int(inf): was OverflowError
        ("input_shape", "[1, 2, 2]", "too small"),  # was ShapeError, not CheckpointError
    ],
)
def test_hostile_metadata_for_a_cnn(tmp_path, key, value, match):
    saved_run(tmp_path, "cnn", {})
    resave(tmp_path, edit_meta=lambda m: m.update({key: value}))
    expect(
        tmp_path,
        f"cannot rebuild.*{match}",
        "metadata values of the wrong type or size (fuzz regressions)",
    )


def test_deep_or_huge_json_in_run_files(tmp_path):
    saved_run(tmp_path)
    (tmp_path / runs.METRICS).write_text("[" * 100_000 + "]" * 100_000)  # was RecursionError
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_run(tmp_path)
    (tmp_path / runs.METRICS).write_text("[" + "9" * 5000 + "]")  # was ValueError (int digits)
    with pytest.raises(CheckpointError, match="unreadable JSON"):
        load_run(tmp_path)


@pytest.mark.parametrize(
    "skeleton,match",
    [
        ({"__items__": None}, "not a list of \\[key, value\\] pairs"),  # was TypeError
        ({"__items__": ["0"]}, "not a list of \\[key, value\\] pairs"),  # was ValueError
        ({"__items__": [[[1], 2]]}, "not a list of \\[key, value\\] pairs"),  # unhashable key
        ({"__tuple__": None}, "'__tuple__' is not a list"),  # was TypeError
        ({"__tensor__": ["x"]}, "lacks tensor"),  # was TypeError: unhashable
        ({"__tensor__": "nope"}, "lacks tensor 'nope'"),  # did not name the file
    ],
)
def test_hostile_resume_skeletons(tmp_path, skeleton, match):
    save_resume_state(tmp_path, {"epoch": 1, "x": torch.ones(2)})
    tensors, meta = tensorfile.load_tensors(tmp_path / runs.RESUME_TENSORS)
    doc = json.loads(meta["resume"])
    doc["state"]["x"] = skeleton
    meta = {"epoch": "1", "format": checkpoint.RESUME_FORMAT, "resume": json.dumps(doc)}
    tensorfile.save_tensors(tmp_path / runs.RESUME_TENSORS, tensors, meta)
    with pytest.raises(CheckpointError, match=match) as err:
        load_resume_state(tmp_path)
    assert str(tmp_path / runs.RESUME_TENSORS) in str(err.value)


def test_epoch_zero_weights_are_not_a_model(tmp_path):
    """A run killed in epoch 1 holds its untrained weights, kept only for --resume."""
    model = get_model("mlp", hidden=(8,))
    save_weights(
        tmp_path / runs.WEIGHTS, model, dict(run_metadata("mlp", {"hidden": [8]}, MNIST), epochs_done=0)
    )
    with pytest.raises(CheckpointError, match="no complete epoch yet.*--resume"):
        load_run(tmp_path)
    (tmp_path / runs.WEIGHTS).unlink()
    (tmp_path / runs.CONFIG).write_text("{}")
    with pytest.raises(CheckpointError, match="no complete epoch yet"):
        load_run(tmp_path)
