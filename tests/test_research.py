"""Each research script runs in --quick mode on the public API and writes a complete results JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    p.stem for p in (ROOT / "research").glob("*.py") if p.stem not in ("common", "__init__")
)


def test_every_research_script_is_listed_in_benchmarks():
    text = (ROOT / "benchmarks" / "BENCHMARKS.md").read_text()
    assert SCRIPTS, "research/ holds no scripts"
    assert [s for s in SCRIPTS if f"research/{s}.py" not in text] == []


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_research_script_quick(name, tmp_path):
    if name == "drawn_fonts" and not any(Path("/usr/share/fonts").rglob("*.ttf")):
        pytest.skip("no TrueType fonts under /usr/share/fonts to type the digits in")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    extra = ["--test-set"] if name == "drawn_fonts" else []  # the drawn test set read, not chosen on
    cmd = [sys.executable, f"research/{name}.py", "--quick", "--out", str(tmp_path), *extra]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert len(result["commit"]) == 40 and result["date"]
    assert result["machine"]["cpu"] and result["machine"]["torch"] and result["machine"]["threads"] >= 1
    assert result["variants"], "no variants"
    for variant, res in result["variants"].items():
        assert res["config"]["dataset"] == "mnist", variant
        assert res["runs"], variant
        for run in res["runs"]:
            assert math.isfinite(run["test_acc"]) and 0.0 <= run["test_acc"] <= 1.0, (variant, run)
            if extra:
                assert 0 <= run["test_set_right"] <= 190, (variant, run)
    assert "wrote" in done.stdout  # the table was printed before the JSON was written
