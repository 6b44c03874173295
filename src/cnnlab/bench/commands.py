"""What the user waits for: whole commands timed from launch to exit, beside `import torch`.

A recipe's training seconds leave out Python's start, the imports, the data load and the files
written at the end; a person running `cnnlab train` waits for all of it. These timings run the
real commands in fresh processes, so the headline and the experience cannot drift apart.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cnnlab.errors import ConfigError


def _wall(argv: list[str]) -> float:
    """Seconds from launching `argv` to its exit; a failed command is a ConfigError."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"timing `{' '.join(argv[2:])}` failed (exit {proc.returncode}): {tail[0]}")
    return seconds


def _serve_seconds(argv: list[str], timeout: float = 120.0) -> float:
    """Seconds from launching `cnnlab serve ... --port 0` until its /healthz answers 200."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "cnnlab: serving N runs (...) on http://HOST:PORT/ ..."
        url = re.search(r"http://\S+/", line)
        if url is None:
            tail = (line or proc.stderr.read()).strip().splitlines()[-1:] or ["no output"]
            raise ConfigError(f"timing `cnnlab serve` failed: {tail[0]}")
        while proc.poll() is None and time.perf_counter() - t0 < timeout:
            try:
                with direct.open(url[0] + "healthz", timeout=5) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - t0
            except OSError:  # listening, not answering yet
                time.sleep(0.01)
        raise ConfigError(f"timing `cnnlab serve`: no answer from {url[0]}healthz")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _digit_image(path: Path) -> Path:
    """A drawn 7, dark on white, for the predict command."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(img).line([(25, 25), (95, 25), (50, 100)], fill=0, width=9)
    img.save(path)
    return path


def command_seconds(recipe: str, flags: list[str], runs: int = 3) -> dict[str, list[float]]:
    """Wall seconds of `python -c "import torch"`, `cnnlab train --recipe RECIPE` (and the
    training seconds it reported), `cnnlab predict RUN one.png` and `cnnlab serve RUN` until
    /healthz answers, each `runs` times in fresh processes, interleaved.

    Args:
        recipe: the recipe to train.
        flags: more `cnnlab train` flags (device, threads, data root, subsets).
        runs: repetitions of each command.
    """
    if runs < 1:
        raise ConfigError(f"runs must be >= 1, not {runs}")
    python = sys.executable
    keys = ("import_torch_s", "train_command_s", "train_command_training_s", "predict_command_s")
    keys += ("serve_command_s",)
    out: dict[str, list[float]] = {key: [] for key in keys}
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as tmp:
        run_dir, image = Path(tmp) / "run", _digit_image(Path(tmp) / "seven.png")
        train = [python, "-m", "cnnlab", "train", "--recipe", recipe, *flags, "--out", str(run_dir)]
        for _ in range(runs):
            out["import_torch_s"].append(_wall([python, "-c", "import torch"]))
            out["train_command_s"].append(_wall([*train, "--overwrite", "-q"]))
            metrics = json.loads((run_dir / "metrics.json").read_text())
            out["train_command_training_s"].append(sum(m["seconds"] for m in metrics))
            out["predict_command_s"].append(
                _wall([python, "-m", "cnnlab", "predict", str(run_dir), str(image)])
            )
            serve = [python, "-m", "cnnlab", "serve", str(run_dir), "--runs", tmp, "--port", "0"]
            out["serve_command_s"].append(_serve_seconds([*serve, "-q"]))
    return out
