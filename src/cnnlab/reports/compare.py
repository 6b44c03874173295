"""`compare_models`: train several models on the same data and seed, then write one report.

Each model gets its own run folder (OUT/NAME) plus eval files; OUT/report.md holds the table
(parameters, MACs per image, training seconds, images/s, test accuracy and loss), the overlaid
curves, the confusion matrices side by side and the lesson's point in one sentence, written
from the measured numbers.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from cnnlab import figures, io, machine, runs
from cnnlab.config import RECIPES, TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.evaluation import evaluate_run
from cnnlab.metrics import smoothed_loss_floor
from cnnlab.models import count_macs, count_parameters
from cnnlab.train import Callback, fit

REPORT = "report.md"
CURVES = "curves.png"
CONFUSION = "confusion.png"
# a model compared under this name trains with the lesson's settings unless flags say otherwise
LESSON_RECIPES = {"mlp": "lesson-mlp"}


def lesson_settings(name: str, explicit=()) -> dict:
    """The lesson recipe's settings for model `name` ({} if it has none), but the `explicit` keys.

    Its epochs stay out: a comparison's budget is shared unless given per model.
    """
    recipe = LESSON_RECIPES.get(name)
    if recipe is None:
        return {}
    skip = {"model", "epochs", *explicit}
    return {k: v for k, v in RECIPES[recipe].items() if k not in skip}


@dataclass
class ComparedModel:
    """One row of the comparison."""

    name: str
    run_dir: Path
    params: int
    macs: int
    train_seconds: float
    images_per_s: float
    test_acc: float
    test_loss: float
    errors: int
    config: TrainConfig
    train_loss_floor: float | None = None  # label smoothing's, under its training loss
    test_acc_one_pass: float | None = None  # with TTA: each image read once, as predict does


def _compared(name: str, run_dir: Path, config: TrainConfig, result, ev: dict) -> ComparedModel:
    """One row of the comparison, from a finished fit and its evaluation."""
    model = runs.load_run(run_dir).model
    seen = sum(m["images_per_s"] * m["seconds"] for m in result.metrics)
    return ComparedModel(
        name=name,
        run_dir=run_dir,
        params=count_parameters(model),
        macs=count_macs(model, result.info.image_shape),
        train_seconds=result.train_seconds,
        images_per_s=seen / max(result.train_seconds, 1e-9),
        test_acc=ev["accuracy"],
        test_loss=ev["loss"],
        errors=ev["errors"],
        config=config,
        train_loss_floor=smoothed_loss_floor(config.label_smoothing, len(result.info.classes)),
        test_acc_one_pass=ev.get("accuracy_one_pass"),
    )


def compare_models(
    models: list[str],
    out_dir: str | os.PathLike,
    base: TrainConfig,
    per_model: dict[str, dict] | None = None,
    callback: Callback | None = None,
    report_intro: str = "",
    report_title: str | None = None,
) -> list[ComparedModel]:
    """Train each model with `base` (plus its `per_model` overrides), evaluate, write the report.

    Args:
        models: registered model names, each at most once.
        out_dir: the comparison folder; model NAME's run folder is out_dir/NAME.
        base: the shared settings (dataset, seed, epochs, ...); its `model` is replaced.
        per_model: name -> TrainConfig overrides for that model (e.g. {"mlp": {"lr": 0.01}}).
        callback: progress events of each fit, plus {"event": "model", "name": ...} first.
        report_intro: markdown put in report.md before the results (e.g. the demo's samples).
        report_title: report.md's heading (default: "Comparison on DATASET").
    """
    if len(set(models)) != len(models) or not models:
        raise ConfigError(f"compare needs distinct model names, not {models}")
    per_model = per_model or {}
    unknown = set(per_model) - set(models)
    if unknown:
        raise ConfigError(f"per-model settings for {', '.join(sorted(unknown))}, not compared")
    out = Path(out_dir)
    rows: list[ComparedModel] = []
    histories, confusions = {}, {}
    for name in models:
        # a compared name is its run folder; its settings may name another model (the demo's
        # "cnn" trains the quick recipe's net)
        config = replace(base, **{"model": name, **per_model.get(name, {})})
        config.validate()
        if callback:
            callback({"event": "model", "name": name, "config": config})
        result = fit(config, out / name, callback=callback)
        ev = evaluate_run(
            out / name, device=config.device, root=config.data_root, subset=config.test_subset
        )
        rows.append(_compared(name, out / name, config, result, ev))
        histories[name] = result.metrics
        confusions[name] = ev["confusion"]
        classes = result.info.classes
    floors = {r.name: r.train_loss_floor for r in rows}
    figures.comparison_curves(histories, out / CURVES, floors)
    figures.confusion_matrices(confusions, classes, out / CONFUSION)
    write_report(rows, out, report_title or f"Comparison on {base.dataset}", report_intro)
    return rows


def table_rows(rows: list[ComparedModel]) -> tuple[list[str], list[list]]:
    """Headers and rows of the comparison table (shared by the CLI and report.md)."""
    headers = [
        "model",
        "parameters",
        "MACs/image",
        "epochs",
        "train s",
        "images/s",
        "test acc %",
        "test loss",
        "errors",
    ]
    body = [
        [
            r.name,
            r.params,
            r.macs,
            r.config.epochs,
            round(r.train_seconds, 1),
            round(r.images_per_s),
            round(100 * r.test_acc, 2),
            round(r.test_loss, 4),
            r.errors,
        ]
        for r in rows
    ]
    return headers, body


def lesson_sentence(rows: list[ComparedModel]) -> str:
    """The comparison's point in one sentence, from the measured numbers of every model."""
    best = max(rows, key=lambda r: r.test_acc)
    worst = min(rows, key=lambda r: r.test_acc)
    if best.errors == worst.errors:
        names = " and ".join(r.name for r in rows)
        cheap = min(rows, key=lambda r: r.macs)
        return (
            f"{names} made the same number of test errors ({best.errors}, "
            f"{100 * best.test_acc:.2f} % accuracy); {cheap.name} needs the fewest MACs per "
            "image, so it is the better choice here."
        )
    ratio = worst.errors / max(best.errors, 1)
    params = (
        f"with {worst.params / best.params:.1f}x fewer parameters"
        if best.params < worst.params
        else f"with {best.params / worst.params:.1f}x more parameters"
    )
    middle = sorted((r for r in rows if r is not best and r is not worst), key=lambda r: r.errors)
    between = (
        " In between: "
        + "; ".join(f"{r.name}, {r.errors} errors ({100 * r.test_acc:.2f} %)" for r in middle)
        + "."
        if middle
        else ""
    )
    why = (
        " Convolutions reuse one small filter at every position of the image, so the CNN "
        "learns local patterns (strokes, edges) wherever they appear, while the MLP must "
        "learn every pixel position separately."
        if "mlp" in worst.name and "mlp" not in best.name
        else ""
    )
    return (
        f"{best.name} made {best.errors} test errors against {worst.name}'s {worst.errors} "
        f"({ratio:.1f}x fewer; {100 * best.test_acc:.2f} % vs {100 * worst.test_acc:.2f} %) "
        f"{params}, costing {best.macs / max(worst.macs, 1):.1f}x the MACs per image."
        f"{between}{why}"
    )


def machine_description() -> str:
    """CPU/GPU, threads and versions, for the report's reproducibility line."""
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"{machine.machine_description()}, torch threads {torch.get_num_threads()}{gpu}; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def tta_note(rows: list[ComparedModel]) -> list[str]:
    """Which rows' test figures average shifted reads, and what one read scores (report lines)."""
    said = [
        f"{r.name}'s test figures average {r.config.tta} one-pixel shifts (test-time "
        f"augmentation); each image read once, as `cnnlab predict` and the web app read it, "
        f"it scores {100 * r.test_acc_one_pass:.2f} %."
        for r in rows
        if r.test_acc_one_pass is not None
    ]
    return [" ".join(said), ""] if said else []


def curves_note(rows: list[ComparedModel]) -> list[str]:
    """Why a training loss sits above its test loss: label smoothing's floor (report lines)."""
    said = [
        f"{r.name} (label smoothing {r.config.label_smoothing:g}: never below "
        f"{r.train_loss_floor:.2f}, its dashed line)"
        for r in rows
        if r.train_loss_floor is not None
    ]
    if not said:
        return []
    return [
        f"The dotted training loss of {', '.join(said)} is measured against smoothed targets, "
        "which even a perfect model cannot fit exactly, while the test losses are plain "
        "cross-entropy: it sits above them by design, so compare the accuracies.",
        "",
    ]


def write_report(rows: list[ComparedModel], out: Path, title: str, intro: str = "") -> Path:
    """report.md: the sentence, the table, the plots, each model's settings and files."""
    headers, body = table_rows(rows)
    lines = [f"# {title}", ""]
    if intro:
        lines += [intro.strip(), ""]
    lines += [
        "## Result",
        "",
        lesson_sentence(rows),
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines += [
        "| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |" for row in body
    ]
    lines += [
        "",
        "Same data, same seed; settings per model below. Training seconds count the "
        "training steps only (not evaluation); the machine: " + machine_description() + ".",
        "",
        *tta_note(rows),
        "## Curves",
        "",
        f"![curves]({CURVES})",
        "",
        *curves_note(rows),
        "## Confusion matrices (test set, % of each true class)",
        "",
        f"![confusion]({CONFUSION})",
        "",
    ]
    for r in rows:
        c = r.config
        rel = os.path.relpath(r.run_dir, out)
        lines += [
            f"## {r.name}",
            "",
            f"`{c.optimizer}` lr {c.lr:g} ({c.schedule}), batch {c.batch_size}, "
            f"{c.epochs} epoch{'' if c.epochs == 1 else 's'}, seed {c.seed}, augment {c.augment}, "
            "inputs "
            f"{'standardised' if c.normalize else 'in [0, 1]'}; run folder "
            f"[`{rel}/`]({rel}/) (`cnnlab eval {r.run_dir}`).",
            "",
            f"![{r.name} errors]({rel}/errors.png)",
            "",
        ]
    return io.write_text(out / REPORT, "\n".join(lines))
