"""examples/minimal.py runs as its docstring says (on real MNIST, so marked slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_minimal_example_trains_compares_and_predicts(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "minimal.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("mlp: ") and lines[1].startswith("cnn: ")
    assert sum("reads" in line for line in lines) == 2
    assert (tmp_path / "mlp" / "model.safetensors").is_file() and (
        tmp_path / "cnn" / "curves.png"
    ).is_file()
