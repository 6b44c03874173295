"""`evaluate_run`: accuracy, per-class scores, confusion matrix and the worst errors of a run.

Reads only the run folder (weights + metadata) and the dataset it names; writes eval.json,
confusion.png and errors.png.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cnnlab import metrics, plots, runs
from cnnlab.data.batches import InMemoryBatches
from cnnlab.data.loader import LoaderBatches
from cnnlab.errors import ConfigError
from cnnlab.train import evaluate, resolve_device

EVAL_JSON = "eval.json"
CONFUSION = "confusion.png"
ERRORS = "errors.png"


def load_split(run: runs.Run, split: str = "test", root: str | os.PathLike | None = None):
    """The dataset split a run was trained on, shaped like its inputs (image folders too)."""
    from cnnlab.data.datasets import IMAGEFOLDER_PREFIX, load_dataset

    if run.dataset.startswith(IMAGEFOLDER_PREFIX):
        c, h, _ = run.input_shape
        ds = load_dataset(run.dataset, split, image_size=h, channels=c)
    else:
        ds = load_dataset(run.dataset, split, root)
    if tuple(ds.info.image_shape) != tuple(run.input_shape):
        raise ConfigError(
            f"{run.dataset} images are {ds.info.image_shape} but the run expects {run.input_shape}"
        )
    return ds


def split_batches(run: runs.Run, ds, batch_size: int = 500, subset: int | None = None,
                  device: str | torch.device = "cpu"):  # fmt: skip
    """Unshuffled, normalised batches of a split (the first `subset` images when given)."""
    if getattr(ds, "in_memory", False):
        n = subset or len(ds)
        return InMemoryBatches(ds.images[:n], ds.targets[:n], batch_size, run.mean, run.std,
                               device=device)  # fmt: skip
    return LoaderBatches(ds, batch_size, run.mean, run.std, subset=subset, device=device)


def raw_image(ds, i: int) -> torch.Tensor:
    """Image i of a split as uint8 (C, H, W), as the user sees it (not normalised)."""
    return ds.images[i] if getattr(ds, "in_memory", False) else ds.load_uint8(i)


def evaluate_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    split: str = "test",
    root: str | os.PathLike | None = None,
    subset: int | None = None,
    device: str = "auto",
    max_errors: int = 30,
) -> dict:
    """Evaluate a run folder on its dataset's split and write the report files.

    Args:
        run_dir: a run folder written by `cnnlab train`.
        out_dir: where eval.json, confusion.png and errors.png go (default: the run folder).
        split: "test" or "train".
        root: data root of registered datasets.
        subset: only the first N images of the split.
        device: auto, cpu, cuda or mps.
        max_errors: how many misclassified images errors.png shows (most confident first).

    Returns:
        The eval.json content plus "files" (the paths written).
    """
    run = runs.load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path
    ds = load_split(run, split, root)
    dev = resolve_device(device)
    model = run.model.to(dev)
    tta = int((run.config or {}).get("tta", 0))  # the run's own test-time augmentation
    result = evaluate(model, split_batches(run, ds, subset=subset, device=dev), return_outputs=True,
                      tta=tta)  # fmt: skip
    probs, targets = result["probs"], result["targets"]
    confidence, preds = probs.max(1)
    cm = metrics.confusion_matrix(targets, preds, run.num_classes)
    report = {
        "run": str(run.path), "model": run.model_name, "dataset": run.dataset, "split": split,
        "loss": result["loss"], **metrics.summary(cm, run.classes),
        "most_confused": metrics.most_confused(cm, run.classes, top=5),
    }  # fmt: skip
    files = {"eval": runs.write_json(out / EVAL_JSON, report)}
    files["confusion"] = plots.confusion_matrices({run.model_name: cm.tolist()}, run.classes,
                                                  out / CONFUSION)  # fmt: skip
    wrong = (preds != targets).nonzero().flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)][:max_errors]  # confident errors first
    if len(wrong):
        images = torch.stack([raw_image(ds, int(i)) for i in wrong])
        titles = [f"{run.classes[int(targets[i])]} -> {run.classes[int(preds[i])]} "
                  f"{100 * float(confidence[i]):.0f}%" for i in wrong]  # fmt: skip
        files["errors"] = plots.image_grid(
            images, titles, out / ERRORS, cols=min(len(wrong), 6),
            suptitle=f"{run.model_name}: {report['errors']} of {report['images']} {split} images "
                     "misclassified (true -> predicted, confidence); most confident first",
            title_colors=["crimson"] * len(wrong),
        )  # fmt: skip
    else:
        files["errors"] = plots.message_figure(
            f"{run.model_name}: no misclassified images among {report['images']}", out / ERRORS
        )
    return {**report, "files": {k: str(v) for k, v in files.items()}}
