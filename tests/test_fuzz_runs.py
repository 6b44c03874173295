"""Fuzzing the weights loader: mutated real run files (header length, JSON header, metadata
values, tensor bytes) and resume states. Only CheckpointError may come out, memory bounded.
"""

from __future__ import annotations

import json
import math
import struct

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzzing import fuzz_settings, memory_cap, mutated, record

from cnnlab.checkpoint import load_resume_state, save_resume_state
from cnnlab.data.datasets import MNIST
from cnnlab.errors import CheckpointError
from cnnlab.models import get_model
from cnnlab.runs import load_run, run_metadata, save_weights
from cnnlab.tensorfile import metadata_digest

pytestmark = pytest.mark.fuzz

AS_HEADROOM = 768 << 20  # a model the metadata may legitimately name, plus torch's workspace

MODELS = {  # small real models: one of each family, so rebuilding from metadata is exercised
    "mlp": {"hidden": [8]},
    "lesson-cnn": {"channels": [2, 3]},
    "cnn": {},
}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    """name -> bytes of a real model.safetensors written by save_weights."""
    out = {}
    for name, kwargs in MODELS.items():
        folder = tmp_path_factory.mktemp(f"seed-{name}")
        torch.manual_seed(0)
        model = get_model(name, MNIST.image_shape, MNIST.num_classes, **kwargs)
        save_weights(folder / "model.safetensors", model, run_metadata(name, kwargs, MNIST))
        out[name] = (folder / "model.safetensors").read_bytes()
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-run")


def split(data: bytes) -> tuple[dict, bytes]:
    """(header dict, tensor bytes) of a safetensors file."""
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict, body: bytes, sign: bool = True) -> bytes:
    """A safetensors file from a header dict and the tensor bytes (header padded to 8 bytes).

    `sign` recomputes the metadata digest, as anyone editing a file on purpose can: the
    checks behind the digest get exercised too.
    """
    meta = header.get("__metadata__")
    if sign and isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values()):
        meta["metadata_sha256"] = metadata_digest(meta)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def load_expecting_checkpoint_errors(folder, data: bytes, target: str) -> None:
    """Write data as the run's weights and load it: a Run that works, or CheckpointError."""
    (folder / "model.safetensors").write_bytes(data)
    try:
        with memory_cap(AS_HEADROOM):
            run = load_run(folder)
            c, h, w = run.input_shape
            with torch.no_grad():
                logits = run.model(torch.zeros(2, c, h, w))
        assert tuple(logits.shape) == (2, run.num_classes)
        assert len(run.mean) == len(run.std) == c and min(run.std) > 0
        assert all(math.isfinite(v) for v in run.mean + run.std)
        outcome = "loaded"
    except CheckpointError as e:
        assert "model.safetensors" in str(e)  # the message names the file
        outcome = "CheckpointError"
    record(target, outcome)


# --- byte level ---------------------------------------------------------------------------


@fuzz_settings()
@given(data=st.data())
def test_mutated_bytes(seeds, scratch, data):
    """Random edits anywhere, favouring the 8-byte length and the JSON header."""
    seed = seeds[data.draw(st.sampled_from(sorted(seeds)))]
    header_len = struct.unpack("<Q", seed[:8])[0] + 8
    blob = data.draw(mutated(seed, max_ops=3, hot=header_len))
    load_expecting_checkpoint_errors(scratch, blob, "weights: mutated bytes (header, JSON, tensors)")


@fuzz_settings(scale=0.5)
@given(
    data=st.data(),
    length=st.one_of(
        st.sampled_from([0, 1, 7, 8, 2**31, 2**32, 2**40, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1)
    ),
)
def test_forged_header_length(seeds, scratch, data, length):
    seed = seeds[data.draw(st.sampled_from(sorted(seeds)))]
    blob = struct.pack("<Q", length) + seed[8:]
    load_expecting_checkpoint_errors(scratch, blob, "weights: forged 8-byte header length")


# --- JSON header level: valid safetensors framing, hostile contents ----------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
big_ints = st.one_of(st.integers(-3, 40), st.sampled_from([0, 4096, 4097, 10**5, 2**31, 10**12, 2**64]))
shapes = st.lists(big_ints, max_size=5)

# values aimed at each metadata key; all strings, as safetensors metadata is str -> str
metadata_values = {
    "model_name": st.sampled_from(["mlp", "cnn", "resnet", "lenet5", "vgg99", "", "__init__"]),
    "model_kwargs": st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "hidden": st.lists(big_ints, max_size=3),
                "channels": st.lists(big_ints, max_size=3),
                "width": big_ints,
                "blocks": big_ints,
                "dropout": st.floats(),
                "bogus": json_values,
            },
        ),
        json_values,
    ).map(json.dumps),
    "classes": st.one_of(
        st.lists(st.text(max_size=4), max_size=12),
        st.integers(0, 10**6).map(lambda n: [str(i) for i in range(min(n, 10**5))]),
        json_values,
    ).map(json.dumps),
    "input_shape": st.one_of(shapes, json_values).map(json.dumps),
    "mean": st.one_of(st.lists(st.floats(), max_size=4), json_values).map(json.dumps),
    "std": st.one_of(st.lists(st.floats(), max_size=4), json_values).map(json.dumps),
    "style": st.text(max_size=10),
    "dataset": st.text(max_size=10),
    "tensors_sha256": st.text(max_size=64),
}
raw_text = st.one_of(
    st.text(max_size=40), st.integers(1, 200_000).map(lambda n: "[" * n + "]" * n)
)  # garbage, or nesting deeper than the JSON parser's recursion limit


@fuzz_settings(scale=2)
@given(data=st.data())
def test_hostile_metadata(seeds, scratch, data):
    """Valid file, untouched tensors (the digest still matches), metadata replaced key by key."""
    name = data.draw(st.sampled_from(sorted(seeds)))
    header, body = split(seeds[name])
    meta = header["__metadata__"]
    for key in data.draw(st.sets(st.sampled_from(sorted(metadata_values)), min_size=1, max_size=3)):
        action = data.draw(st.sampled_from(["aimed", "raw", "delete"]))
        if action == "delete":
            meta.pop(key, None)
        else:
            meta[key] = data.draw(metadata_values[key] if action == "aimed" else raw_text)
    load_expecting_checkpoint_errors(scratch, join(header, body), "weights: hostile metadata values")


@fuzz_settings()
@given(data=st.data())
def test_hostile_tensor_entries(seeds, scratch, data):
    """Tensor entries with another dtype, shape or data_offsets (framing stays valid)."""
    name = data.draw(st.sampled_from(sorted(seeds)))
    header, body = split(seeds[name])
    tensors = sorted(k for k in header if k != "__metadata__")
    for key in data.draw(st.lists(st.sampled_from(tensors), min_size=1, max_size=3)):
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "drop", "rename"]))
        entry = header.get(key)
        if entry is None:
            continue
        if field == "dtype":
            entry["dtype"] = data.draw(
                st.sampled_from(["F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "C64", "X9", ""])
            )
        elif field == "shape":
            entry["shape"] = data.draw(shapes)
        elif field == "data_offsets":
            entry["data_offsets"] = data.draw(st.lists(big_ints, min_size=2, max_size=2))
        elif field == "drop":
            del header[key]
        else:
            header[key + data.draw(st.text(min_size=1, max_size=3))] = header.pop(key)
    load_expecting_checkpoint_errors(scratch, join(header, body), "weights: hostile tensor entries")


# --- resume state ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resume_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    model = get_model("mlp", hidden=(8,))
    opt = torch.optim.Adam(model.parameters())
    model(torch.zeros(2, 1, 28, 28)).sum().backward()
    opt.step()
    save_resume_state(
        folder,
        {
            "epoch": 1,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "rng": torch.get_rng_state(),
        },
    )
    return folder


@fuzz_settings()
@given(data=st.data())
def test_hostile_resume_state(resume_folder, data):
    """The resume state's JSON (in resume.safetensors' metadata) replaced in places, re-signed:
    CheckpointError or a nested state."""
    path = resume_folder / "resume.safetensors"
    good = path.read_bytes()
    header, body = split(good)
    meta = header["__metadata__"]
    doc = json.loads(meta["resume"])
    state = doc["state"]
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(state)))
        state[key] = data.draw(
            st.one_of(
                json_values,
                st.fixed_dictionaries({"__tensor__": json_values}),
                st.fixed_dictionaries({"__items__": json_values}),
                st.fixed_dictionaries({"__tuple__": json_values}),
            )
        )
    if data.draw(st.booleans()):
        doc["epoch"] = data.draw(json_values)
    if data.draw(st.booleans()):
        meta["resume"] = json.dumps(doc)
    else:
        meta["resume"] = data.draw(mutated(meta["resume"].encode(), 2)).decode("utf-8", "replace")
    try:
        path.write_bytes(join(header, body))
        with memory_cap(AS_HEADROOM):
            load_resume_state(resume_folder)
        outcome = "loaded"
    except CheckpointError as e:
        assert str(resume_folder) in str(e)
        outcome = "CheckpointError"
    finally:
        path.write_bytes(good)
    record("resume state: hostile JSON structure", outcome)
