"""Run folders written before the redesign (cnnlab 0.1.0 at commit b6738be) still load, predict
the same logits, and resume.

tests/fixtures/runs-0.1.0/ holds an `mlp` and a `fast` (whitening stem) run trained by that
version for 2 epochs on 1024 MNIST images; expected_logits.json is what that version's model
computed for a fixed input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cnnlab import checkpoint, runs

FIXTURES = Path(__file__).parent / "fixtures" / "runs-0.1.0"
EXPECTED = json.loads((FIXTURES / "expected_logits.json").read_text())


def fixed_input() -> torch.Tensor:
    x = (torch.arange(28 * 28, dtype=torch.float32).reshape(1, 1, 28, 28) % 17) / 17 - 0.3
    return torch.cat([x, x.flip(-1)])


@pytest.mark.parametrize("name", ["mlp", "fast"])
def test_old_run_loads_and_computes_the_same_logits(name):
    run = runs.load_run(FIXTURES / name)
    assert run.model_name == name and run.input_shape == (1, 28, 28) and len(run.metrics) == 2
    with torch.no_grad():
        logits = run.model(fixed_input())
    torch.testing.assert_close(logits, torch.tensor(EXPECTED["logits"][name]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "fast"])
def test_old_run_resume_state_and_config_read_back(name, tmp_path):
    folder = shutil.copytree(FIXTURES / name, tmp_path / name)
    state = checkpoint.load_resume_state(folder)
    assert state["epoch"] == 2 and len(state["metrics"]) == 2
    config = checkpoint.resume_config(folder, epochs=2)
    assert config.model == name and config.train_subset == 1024


def test_package_face_loads_an_old_run_and_predicts(tmp_path):
    """`cnnlab.load(RUN).predict([file])`, the README's three lines, on a drawn digit."""
    from PIL import Image, ImageDraw

    import cnnlab

    digit = tmp_path / "one.png"
    img = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(img).line([(60, 15), (60, 105)], fill=0, width=12)
    img.save(digit)
    (prediction,) = cnnlab.load(FIXTURES / "mlp").predict([digit])
    assert prediction.label in [str(i) for i in range(10)] and 0 < prediction.probability <= 1
    assert "tensor" not in repr(prediction)  # the 28x28 input is not dumped into the repr
