"""Evaluation: `evaluate` (loss and accuracy of a model, with test-time augmentation) and
`evaluate_run` (a run folder's per-class scores, confusion matrix and worst errors).

`evaluate_run` reads only the run folder (weights + metadata) and the dataset it names, and
writes eval.json, confusion.png and errors.png.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from cnnlab import distributed, io, metrics, runs
from cnnlab.config import TTA_MAX
from cnnlab.data.factory import make_batches, raw_image
from cnnlab.devices import autocast, resolve_device
from cnnlab.errors import CheckpointError, ConfigError

EVAL_JSON = "eval.json"
CONFUSION = "confusion.png"
ERRORS = "errors.png"
# One-pixel shifts for test-time augmentation, most useful first (a run's tta takes a prefix).
TTA_SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1))


def global_sums(batches, values: list, device: torch.device) -> list[float]:
    """Sums over every process when `batches` is one rank's shard; else the values."""
    if getattr(batches, "world_size", 1) == 1:
        return [float(v) for v in values]
    return distributed.sum_across_ranks(values, device)


def tta_log_probs(model: nn.Module, x: torch.Tensor, shifts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log of the softmax averaged over x and its first `shifts` one-pixel shifts (TTA_SHIFTS),
    and the logits of x itself: what a single read (predict, the web app, an export) gives."""
    once = model(x)
    probs = once.float().softmax(1)  # (B, classes)
    for dy, dx in TTA_SHIFTS[:shifts]:
        # roll wraps one row/column around; it is background in centred images, and cheaper
        # than padding and cropping
        probs += model(torch.roll(x, (dy, dx), (2, 3))).float().softmax(1)
    return (probs / (shifts + 1)).log(), once


@torch.no_grad()
def evaluate(
    model: nn.Module, batches, *, bf16: bool = False, return_outputs: bool = False, tta: int = 0
) -> dict:
    """Mean loss and accuracy over `batches` (eval mode); optionally the probabilities.

    With `tta` > 0 the prediction averages the softmax over each image and `tta` one-pixel
    shifts of it (loss and probabilities are those of the average), and "acc_one_pass" is the
    accuracy of each image read once, as `Predictor`, the web app and exports read it.

    Returns:
        {"loss", "acc", "n"} (and "acc_one_pass" with tta) and, with return_outputs, "probs"
        (N, classes) and "targets" (N,) as CPU tensors. When `batches` is one rank's shard,
        the figures are the whole job's.
    """
    if return_outputs and getattr(batches, "world_size", 1) > 1:
        raise ConfigError("evaluate(return_outputs=True) needs all the test batches, not one shard")
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct, correct_once, n = 0.0, 0, 0, 0
    probs, targets = [], []
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast(device, bf16):
            logits, once = (model(x), None) if tta == 0 else tta_log_probs(model, x, tta)
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
        if once is not None:  # with tta: the unshifted read, counted apart
            correct_once += int((once.argmax(1) == y).sum())
        n += len(y)
        if return_outputs:
            probs.append(logits.softmax(1).cpu())
            targets.append(y.cpu())
    sums = global_sums(batches, [loss_sum, correct, correct_once, n], device)
    loss_sum, correct, correct_once, n = sums
    out = {"loss": loss_sum / max(n, 1), "acc": correct / max(n, 1), "n": int(n)}
    if tta:
        out["acc_one_pass"] = correct_once / max(n, 1)
    if return_outputs:
        out["probs"] = torch.cat(probs) if probs else torch.empty(0)
        out["targets"] = torch.cat(targets) if targets else torch.empty(0, dtype=torch.long)
    return out


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


def split_batches(
    run: runs.Run,
    ds,
    batch_size: int = 500,
    subset: int | None = None,
    device: str | torch.device = "cpu",
):
    """Unshuffled, normalised batches of a split (the first `subset` images when given).

    Batches shrink below `batch_size` for models whose activations would outgrow the budget.
    """
    from cnnlab.models import safe_batch_size

    batch_size = safe_batch_size(run.model, run.input_shape, batch_size)
    return make_batches(ds, batch_size, run.mean, run.std, subset=subset, device=device)


def run_tta(run: runs.Run) -> int:
    """The run's own test-time augmentation, from config.json (a user file: checked)."""
    config = run.config if run.config is not None else {}
    tta = config.get("tta", 0) if isinstance(config, dict) else None
    if not (isinstance(tta, int) and not isinstance(tta, bool) and 0 <= tta <= TTA_MAX):
        raise CheckpointError(
            f"{run.path / runs.CONFIG}: 'tta' must be a whole number 0..{TTA_MAX}, not {tta!r:.40}; "
            "the file was edited: fix that value or delete config.json"
        )
    return tta


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
    batches = split_batches(run, ds, subset=subset, device=dev)
    tta = run_tta(run)
    result = evaluate(model, batches, return_outputs=True, tta=tta)
    probs, targets = result["probs"], result["targets"]
    preds = probs.argmax(1)
    cm = metrics.confusion_matrix(targets, preds, run.num_classes)
    report = {
        "run": str(run.path),
        "model": run.model_name,
        "dataset": run.dataset,
        "split": split,
        "loss": result["loss"],
        **metrics.summary(cm, run.classes),
        **({"tta": tta, "accuracy_one_pass": result["acc_one_pass"]} if tta else {}),
        "most_confused": metrics.most_confused(cm, run.classes, top=5),
    }
    from cnnlab import figures  # matplotlib: only where a figure is drawn

    files = {"eval": io.write_json(out / EVAL_JSON, report)}
    files["confusion"] = figures.confusion_matrices(
        {run.model_name: cm.tolist()}, run.classes, out / CONFUSION
    )
    files["errors"] = _errors_figure(run, ds, probs, targets, report, out / ERRORS, split, max_errors)
    return {**report, "files": {k: str(v) for k, v in files.items()}}


def _errors_figure(run, ds, probs, targets, report, out: Path, split: str, max_errors: int) -> Path:
    """The most confident mistakes as a grid (or a note that there are none)."""
    from cnnlab import figures

    confidence, preds = probs.max(1)
    wrong = (preds != targets).nonzero().flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)][:max_errors]  # confident errors first
    if not len(wrong):
        return figures.message_figure(
            f"{run.model_name}: no misclassified images among {report['images']}", out
        )
    images = torch.stack([raw_image(ds, int(i)) for i in wrong])
    titles = [
        f"{run.classes[int(targets[i])]} -> {run.classes[int(preds[i])]} "
        f"{100 * float(confidence[i]):.0f}%"
        for i in wrong
    ]
    return figures.image_grid(
        images,
        titles,
        out,
        cols=min(len(wrong), 6),
        suptitle=f"{run.model_name}: {report['errors']} of {report['images']} {split} images "
        "misclassified (true -> predicted, confidence); most confident first",
        title_colors=["crimson"] * len(wrong),
    )
