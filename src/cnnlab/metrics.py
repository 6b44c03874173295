"""Classification metrics from predictions: confusion matrix, per-class precision/recall/F1.

Pure functions over tensors; no model, no files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def confusion_matrix(targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[t, p] = how many images of true class t were predicted as p; int64 (K, K)."""
    targets, preds = targets.long().reshape(-1), preds.long().reshape(-1)
    if targets.shape != preds.shape:
        raise ValueError(f"{len(targets)} targets but {len(preds)} predictions")
    flat = targets * num_classes + preds
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_scores(cm: torch.Tensor, classes: Sequence[str]) -> list[dict]:
    """Precision, recall, F1 and support of each class from a confusion matrix.

    A class never predicted has precision 0 (not NaN), one never present has recall 0.
    """
    cm = cm.double()
    tp = cm.diag()
    predicted = cm.sum(0)  # column sums: how often each class was predicted
    support = cm.sum(1)  # row sums: how many images each class has
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    return [
        {
            "class": str(name),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]


def summary(cm: torch.Tensor, classes: Sequence[str]) -> dict:
    """Accuracy, macro precision/recall/F1, per-class scores and the matrix as lists."""
    scores = per_class_scores(cm, classes)
    total = int(cm.sum())
    k = max(len(scores), 1)
    return {
        "accuracy": float(cm.diag().sum()) / max(total, 1),
        "errors": total - int(cm.diag().sum()),
        "images": total,
        "macro_precision": sum(s["precision"] for s in scores) / k,
        "macro_recall": sum(s["recall"] for s in scores) / k,
        "macro_f1": sum(s["f1"] for s in scores) / k,
        "per_class": scores,
        "confusion": cm.tolist(),
    }


def most_confused(cm: torch.Tensor, classes: Sequence[str], top: int = 3) -> list[tuple[str, str, int]]:
    """The `top` largest off-diagonal cells as (true class, predicted class, count)."""
    off = cm.clone()
    off.fill_diagonal_(0)
    values, flat = off.reshape(-1).sort(descending=True)
    k = cm.shape[0]
    return [
        (str(classes[int(i) // k]), str(classes[int(i) % k]), int(v))
        for v, i in zip(values[:top], flat[:top], strict=True)
        if v > 0
    ]


def smoothed_loss_floor(smoothing: float, num_classes: int) -> float | None:
    """The lowest cross-entropy a model can reach against label-smoothed targets (their entropy).

    With smoothing e over K classes the target puts 1 - e + e/K on the true class and e/K on
    each other one, so even a perfect model's training loss stays at that target's entropy
    (0.50 for e = 0.1, K = 10), while the test loss, plain cross-entropy, can go to 0. None
    without smoothing.
    """
    if not smoothing > 0 or num_classes < 2:
        return None
    rest = smoothing / num_classes
    top = 1.0 - smoothing + rest
    return -(top * math.log(top) + (num_classes - 1) * rest * math.log(rest))
