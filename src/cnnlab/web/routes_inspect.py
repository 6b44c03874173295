"""The Runs page's API: every run as a table row, one run in detail (curves, config, confusion
matrix, per-class scores) and the test images of one confusion cell with their saliency maps.

A run's evaluation is computed once and kept in its folder: eval.json (written by
`cnnlab.evaluation.evaluate_run`) and eval_predictions.json (the misclassified test images:
index, true class, predicted class, confidence); both are redone when the weights are newer.
Run names are looked up among the registry's runs, never used as paths.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import torch
from fastapi import APIRouter, Query

from cnnlab.web.deps import LimiterDep, RegistryDep, SettingsDep
from cnnlab.web.errors import ERRORS
from cnnlab.web.run_registry import WEIGHTS, RunNotFound, RunRegistry, check_name, describe_run

router = APIRouter(responses=ERRORS, tags=["runs"])
PREDICTIONS = "eval_predictions.json"
MAX_CELL_IMAGES = 60  # images one confusion cell answers at most
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def run_folder(registry: RunRegistry, name: str) -> Path:
    """The folder of an offered run; ConfigError (400) for a malformed name, RunNotFound (404)."""
    folder = registry.names().get(check_name(name))
    if folder is None:
        raise RunNotFound(f"no run {name[:80]!r} on this server; GET /api/runs lists the runs")
    return folder


def _read(path: Path):
    """A JSON file of a run folder, or None when absent or unreadable."""
    from cnnlab.errors import CnnlabError
    from cnnlab.runs import read_json

    try:
        return read_json(path) if path.is_file() else None
    except (CnnlabError, OSError):
        return None


def train_loss_floor(config: dict, classes: list) -> float | None:
    """Label smoothing's floor under the run's training loss (None without smoothing, or when
    config.json does not say a valid one)."""
    from cnnlab.metrics import smoothed_loss_floor

    smoothing = config.get("label_smoothing")
    if isinstance(smoothing, bool) or not isinstance(smoothing, int | float) or not 0 <= smoothing < 1:
        return None
    return smoothed_loss_floor(float(smoothing), len(classes))


def _one_pass(report: dict) -> dict:
    """A TTA run's single-read accuracy (what Draw reads) from eval.json, a run folder's file:
    only a fraction beside a whole number of shifts, else nothing."""
    once, tta = report.get("accuracy_one_pass"), report.get("tta")
    if isinstance(once, float) and 0 <= once <= 1 and type(tta) is int and tta > 0:
        return {"accuracy_one_pass": once, "tta": tta}
    return {"accuracy_one_pass": None, "tta": 0}


def run_state(metrics, config) -> str:
    """ "resumable" when fewer epochs are saved than its config asks for, else "done"."""
    epochs = config.get("epochs") if isinstance(config, dict) else None
    done = len(metrics) if isinstance(metrics, list) else 0
    return "resumable" if isinstance(epochs, int) and done < epochs else "done"


def run_row(name: str, folder: Path) -> dict:
    """One row of the Runs table: GET /api/runs's entry plus val accuracy, date and state."""
    from cnnlab.runs import CONFIG, METRICS

    row = describe_run(name, folder)
    metrics, config = _read(folder / METRICS), _read(folder / CONFIG)
    last = metrics[-1] if isinstance(metrics, list) and metrics and isinstance(metrics[-1], dict) else {}
    val = last.get("val_acc")
    row["val_accuracy"] = float(val) if isinstance(val, int | float) else None
    try:
        row["date"] = time.strftime("%Y-%m-%d %H:%M", time.localtime((folder / WEIGHTS).stat().st_mtime))
    except OSError:
        row["date"] = None
    row["state"] = run_state(metrics, config)
    return row


def unstarted_rows(runs_dir: Path | None, listed: dict) -> list[dict]:
    """Rows of the runs folder's run folders stopped before their first epoch saved weights."""
    from cnnlab.runs import CONFIG

    rows = []
    folders = (
        sorted(p for p in runs_dir.iterdir() if p.is_dir())[:500]
        if runs_dir and runs_dir.is_dir()
        else []
    )
    for folder in folders:
        config = (
            _read(folder / CONFIG)
            if folder.name not in listed and not folder.name.startswith(".")
            else None
        )
        if isinstance(config, dict) and not (folder / WEIGHTS).exists():
            row = {"name": folder.name, "model": config.get("model"), "dataset": config.get("dataset")}
            row.update(epochs=0, test_accuracy=None, val_accuracy=None, parameters=None, error=None)
            row.update(date=None, state="resumable", weights=False)
            rows.append(row)
    return rows


@router.get("/api/run-table", summary="Every run as a row of the Runs table")
def run_table(registry: RegistryDep) -> dict:
    """Model, dataset, epochs, test/val accuracy, parameters, date and state of every run
    (state "resumable": it stopped before its last epoch; `POST /api/jobs {"resume": name}`),
    and the run folders stopped before their first epoch (`"weights": false`)."""
    names = registry.names()
    return {
        "runs": [run_row(name, folder) for name, folder in names.items()]
        + unstarted_rows(registry.runs_dir, names)
    }


def _fresh(path: Path, weights: Path) -> bool:
    """True when path exists and is not older than the weights."""
    try:
        return path.stat().st_mtime_ns >= weights.stat().st_mtime_ns
    except OSError:
        return False


def _test_subset(folder: Path) -> int | None:
    """The run's own test_subset, so that its evaluation matches its reported test accuracy."""
    config = _read(folder / "config.json")
    subset = config.get("test_subset") if isinstance(config, dict) else None
    return subset if isinstance(subset, int) and not isinstance(subset, bool) and subset > 0 else None


def compute_evaluation(folder: Path, root) -> tuple[dict, list[dict]]:
    """Evaluate a run on its test split; write eval.json and eval_predictions.json."""
    from cnnlab import io
    from cnnlab.evaluation import EVAL_JSON, evaluate, evaluate_run, load_split, run_tta, split_batches
    from cnnlab.runs import load_run

    subset = _test_subset(folder)
    evaluate_run(folder, root=root, subset=subset, device="cpu")
    run = load_run(folder)
    batches = split_batches(run, load_split(run, "test", root), subset=subset)
    out = evaluate(run.model, batches, return_outputs=True, tta=run_tta(run))  # per image this time
    confidence, preds = out["probs"].max(1)
    targets = out["targets"]
    wrong = (preds != targets).nonzero().flatten().tolist()
    rows = [
        {"index": i, "true": int(targets[i]), "pred": int(preds[i]), "confidence": float(confidence[i])}
        for i in wrong
    ]
    io.write_json(folder / PREDICTIONS, {"split": "test", "subset": subset, "errors": rows})
    return _read(folder / EVAL_JSON), rows


def evaluation(name: str, folder: Path, root) -> tuple[dict, list[dict]]:
    """The run's cached evaluation (eval.json, eval_predictions.json), computed once."""
    from cnnlab.evaluation import EVAL_JSON

    with _LOCKS_LOCK:
        lock = _LOCKS.setdefault(name, threading.Lock())
    with lock:  # two requests for a new run compute it once
        weights = folder / WEIGHTS
        report, preds = _read(folder / EVAL_JSON), _read(folder / PREDICTIONS)
        if (
            isinstance(report, dict)
            and report.get("split") == "test"
            and isinstance(preds, dict)
            and isinstance(preds.get("errors"), list)
            and _fresh(folder / EVAL_JSON, weights)
            and _fresh(folder / PREDICTIONS, weights)
        ):
            return report, preds["errors"]
        return compute_evaluation(folder, root)


@router.get("/api/runs/{name:path}/errors", summary="The test images of one confusion cell")
async def cell_errors(
    name: str,
    *,
    true: int = Query(..., ge=0, le=999, description="true class index"),
    pred: int = Query(..., ge=0, le=999, description="predicted class index"),
    limit: int = Query(24, ge=1, le=MAX_CELL_IMAGES, description="images at most"),
    registry: RegistryDep,
    limiter: LimiterDep,
    settings: SettingsDep,
) -> dict:
    """The misclassified test images that are `true` but read as `pred`, most confident first,
    each with its saliency map (SmoothGrad of the predicted class). The diagonal holds none."""
    folder = run_folder(registry, name)
    _, rows = await limiter.run(evaluation, name, folder, settings.data_root)
    cell = sorted(
        (r for r in rows if r.get("true") == true and r.get("pred") == pred),
        key=lambda r: -float(r.get("confidence", 0)),
    )[:limit]
    loaded = await limiter.run(registry.get, name)  # reloaded when the weights changed
    images = await limiter.run(cell_images, loaded.run, cell, settings.data_root)
    return {"run": name, "true": true, "pred": pred, "errors": images}


def _heat(sal: torch.Tensor) -> np.ndarray:
    """A (H, W) saliency in [0, 1] as a black-red-yellow-white RGB heat map."""
    s = sal.clamp(0, 1).numpy()
    rgb = np.stack([np.clip(3 * s, 0, 1), np.clip(3 * s - 1, 0, 1), np.clip(3 * s - 2, 0, 1)], -1)
    return (255 * rgb).astype(np.uint8)


def cell_images(run, cell: list[dict], root) -> list[dict]:
    """Each listed test image as a data URL with its saliency map."""
    from cnnlab.data.factory import raw_image
    from cnnlab.evaluation import load_split
    from cnnlab.explain import saliency_map
    from cnnlab.web.payload import input_data_url, png_data_url

    ds = load_split(run, "test", root)
    mean = torch.tensor(run.mean).view(-1, 1, 1)
    std = torch.tensor(run.std).view(-1, 1, 1)
    out = []
    for r in cell:
        img = raw_image(ds, int(r["index"]))  # uint8 (C, H, W)
        x = ((img.float() / 255 - mean) / std)[None]
        sal = saliency_map(run.model, x, int(r["pred"]))
        out.append(
            {
                "index": int(r["index"]),
                "confidence": float(r["confidence"]),
                "image": input_data_url(img),
                "saliency": png_data_url(_heat(sal)),
            }
        )
    return out


@router.get("/api/runs/{name:path}", summary="One run in detail")
async def run_detail(
    name: str, registry: RegistryDep, limiter: LimiterDep, settings: SettingsDep
) -> dict:
    """Its metrics per epoch, logged training steps, config, classes, confusion matrix (rows:
    true class) and per-class scores on its test split (evaluated once, then read from the run
    folder)."""
    from cnnlab.run_logs import read_step_rows
    from cnnlab.runs import CONFIG, METRICS, METRICS_CSV

    folder = run_folder(registry, name)
    report, _ = await limiter.run(evaluation, name, folder, settings.data_root)
    metrics, config = _read(folder / METRICS), _read(folder / CONFIG)
    report = report if isinstance(report, dict) else {}
    config = config if isinstance(config, dict) else {}
    classes = [s.get("class") for s in report.get("per_class", []) if isinstance(s, dict)]
    return {
        "run": name,
        "row": run_row(name, folder),
        "metrics": metrics if isinstance(metrics, list) else [],
        "steps": read_step_rows(folder / METRICS_CSV),
        "config": config,
        "classes": classes,
        "train_loss_floor": train_loss_floor(config, classes),
        "confusion": report.get("confusion", []),
        "per_class": report.get("per_class", []),
        "accuracy": report.get("accuracy"),
        **_one_pass(report),
        "images": report.get("images"),
    }
