"""`cnnlab data ...` end to end: output, exit codes, the PNG grid."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from cnnlab.cli import main


def test_info_on_fake(fake_dataset, capsys):
    assert main(["data", "info", "--dataset", "fake", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["splits"]["train"]["images"] == 600 and facts["splits"]["train"]["batches"] == 10


def test_show_writes_png(fake_dataset, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["data", "show", "--dataset", "fake", "--n", "6", "--out", str(out)]) == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 200


def test_errors_are_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "data", "info", "--dataset", "nope"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown dataset 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_source_is_one_line(tmp_path):
    env = {"CNNLAB_DATA": str(tmp_path), "CNNLAB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "data",
            "fetch",
            "--dataset",
            "fashion-mnist",
            "--root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode == 0:
        pytest.skip("Fashion-MNIST is installed system-wide here, so fetch succeeds")
    assert proc.returncode == 2 and "Tried:" in proc.stderr


@pytest.mark.slow
def test_info_real_mnist(real_root, capsys):
    assert main(["data", "info", "--dataset", "mnist", "--root", str(real_root)]) == 0
    out = capsys.readouterr().out
    assert "60000" in out and "10000" in out and "(1, 28, 28)" in out and "938" in out
    lines = [line for line in out.splitlines() if line.startswith("train")]
    assert lines[0].split()[-1] == "5"
