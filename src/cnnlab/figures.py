"""Matplotlib figures written as PNG files (Agg backend: no screen needed).

Each function takes plain data (tensors, lists, dicts), writes one PNG and returns its path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cnnlab import io  # noqa: E402


def save_figure(fig, out: str | os.PathLike, dpi: int = 110) -> Path:
    """Save atomically (`.part` then rename) and close the figure."""
    try:
        return io.atomic_write(
            out, lambda part: fig.savefig(part, dpi=dpi, bbox_inches="tight", format="png")
        )
    finally:
        plt.close(fig)


def image_grid(
    images,
    titles: Sequence[str],
    out: str | os.PathLike,
    cols: int | None = None,
    suptitle: str | None = None,
    title_colors: Sequence[str] | None = None,
) -> Path:
    """A grid of images (tensor/array (N, C, H, W) or (N, H, W), uint8 or float) with titles."""
    n = len(images)
    cols = cols or min(n, 6 if n <= 12 else 10)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(1.6 * cols, 1.8 * rows + (0.4 if suptitle else 0)),
        squeeze=False,
        layout="constrained",
    )
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        img = images[i]
        img = img.detach().cpu().numpy() if hasattr(img, "detach") else img
        if img.ndim == 3:
            img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        ax.imshow(img, cmap="gray", interpolation="none")
        ax.set_title(titles[i], fontsize=9, color=title_colors[i] if title_colors else "black")
    if suptitle:
        fig.suptitle(suptitle)
    return save_figure(fig, out)


def training_curves(
    metrics: Sequence[dict],
    out: str | os.PathLike,
    title: str = "",
    steps: Sequence[dict] = (),
    train_floor: float | None = None,
) -> Path:
    """Loss and accuracy per epoch, train and validation (or test), from metrics.json rows;
    with the logged step rows (`cnnlab.run_logs`), training's running figures within each
    epoch as a line, so that a one-epoch run is a curve rather than a dot.

    With a validation split the test set is evaluated once, so it is one marker at the end.
    `train_floor` (label smoothing's, `metrics.smoothed_loss_floor`) is drawn as a line, so a
    training loss above the test loss is not read as a model that fails to learn.
    """
    epochs = [m["epoch"] for m in metrics]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = _step_positions(steps)
    if xs:
        style = dict(color="tab:blue", linewidth=1, alpha=0.6, label="train, running mean in epoch")
        ax_loss.plot(xs, [s["loss"] for s in steps], **style)
        ax_acc.plot(xs, [100 * s["acc"] for s in steps], **style)
    train_style = "o" if xs else "o-"  # the step line already joins the epochs
    for split, style in (("train", train_style), ("val", "s--"), ("test", "D:")):
        rows = [m for m in metrics if f"{split}_acc" in m]
        if rows:
            at = [m["epoch"] for m in rows]
            ax_loss.plot(at, [m[f"{split}_loss"] for m in rows], style, label=split)
            ax_acc.plot(at, [100 * m[f"{split}_acc"] for m in rows], style, label=split)
    if train_floor is not None:
        _floor_line(ax_loss, train_floor, "tab:blue", "train's floor")
    _label_axes(ax_loss, ax_acc, ([0] if xs else []) + epochs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out)


def _step_positions(steps: Sequence[dict]) -> list[float]:
    """Each step row's place on the epoch axis: epoch e's step k of n at e - 1 + k / n (the
    last step of an epoch is always logged, so n is the epoch's largest step)."""
    last: dict[int, int] = {}
    for s in steps:
        last[s["epoch"]] = max(last.get(s["epoch"], 0), s["step"])
    return [s["epoch"] - 1 + s["step"] / last[s["epoch"]] for s in steps]


def _floor_line(ax, floor: float, color: str, label: str) -> None:
    """Label smoothing's floor under a training loss: thin, dashed, in the curve's colour."""
    ax.axhline(floor, color=color, linestyle=(0, (6, 4)), linewidth=0.8, alpha=0.7)
    ax.annotate(
        f"{label} {floor:.2f} (label smoothing)",
        (0.01, floor),
        xycoords=("axes fraction", "data"),
        xytext=(0, 3),
        textcoords="offset points",
        fontsize=7,
        color=color,
    )


def comparison_curves(
    histories: dict[str, Sequence[dict]],
    out: str | os.PathLike,
    train_floors: dict[str, float | None] | None = None,
) -> Path:
    """Overlaid held-out loss and accuracy per epoch of several runs (name -> metrics rows).

    Held out means validation when a run has a split, else test. `train_floors` (name ->
    label smoothing's floor, or None) are drawn under those runs' training losses.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    all_epochs: list[int] = []
    for name, metrics in histories.items():
        epochs = [m["epoch"] for m in metrics]
        all_epochs += epochs
        split = "val" if "val_acc" in metrics[-1] else "test"
        line = ax_loss.plot(epochs, [m[f"{split}_loss"] for m in metrics], "o-", label=f"{name} {split}")
        color = line[0].get_color()
        ax_loss.plot(epochs, [m["train_loss"] for m in metrics], ":", color=color, label=f"{name} train")
        floor = (train_floors or {}).get(name)
        if floor is not None:
            _floor_line(ax_loss, floor, color, f"{name} train's floor")
        accuracy = [100 * m[f"{split}_acc"] for m in metrics]
        ax_acc.plot(epochs, accuracy, "o-", color=color, label=f"{name} {split}")
    _label_axes(ax_loss, ax_acc, sorted(set(all_epochs)))
    ax_acc.set_title("held-out accuracy (validation when split, else test)")
    ax_loss.set_title("loss (dotted: train)")
    fig.tight_layout()
    return save_figure(fig, out)


def shift_curves(accuracy: dict[str, Sequence[float]], n: int, out: str | os.PathLike) -> Path:
    """Accuracy of each model (name -> one figure per shift k = 0, 1, ...) on n moved images."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, accs in accuracy.items():
        ax.plot(range(len(accs)), [100 * a for a in accs], "o-", label=name)
    ax.set_xlabel("pixels moved right and down (no re-centring)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"the first {n:,} test images, moved")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, out)


def _label_axes(ax_loss, ax_acc, epochs) -> None:
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xticks(list(epochs))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def percent_text(count: int, total: int) -> str:
    """count/total as a whole percentage that never rounds to 0 or 100 when it is neither.

    A class with 1 error in 1000 reads ">99", not "100"; 1 image in 1000 reads "<1", not "0".
    """
    if total <= 0 or count <= 0:
        return "0"
    rounded = round(100 * count / total)
    if count < total and rounded >= 100:
        return ">99"
    return "<1" if rounded < 1 else str(rounded)


def confusion_matrices(
    matrices: dict[str, Sequence[Sequence[int]]],
    classes: Sequence[str],
    out: str | os.PathLike,
) -> Path:
    """Row-normalised, annotated confusion matrices side by side (name -> counts[true][pred])."""
    import numpy as np

    n = len(matrices)
    k = len(classes)
    size = max(4.0, 0.45 * k)
    fig, axes = plt.subplots(1, n, figsize=(size * n + 0.5, size), squeeze=False)
    for ax, (name, counts) in zip(axes[0], matrices.items(), strict=True):
        cm = np.asarray(counts, dtype=float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)  # each row sums to 1: recall
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(
                            j,
                            i,
                            percent_text(int(cm[i, j]), int(cm[i].sum())),
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black",
                        )
        ticks = list(range(k))
        short = [c if len(c) <= 8 else c[:7] + "." for c in classes]
        ax.set_xticks(ticks, short, rotation=90 if max(map(len, short)) > 2 else 0, fontsize=8)
        ax.set_yticks(ticks, short, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name} (% of each true class)")
    fig.tight_layout()
    return save_figure(fig, out)


def message_figure(text: str, out: str | os.PathLike) -> Path:
    """A small PNG holding only a sentence (e.g. "no misclassified images")."""
    fig = plt.figure(figsize=(5, 1.2))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=11)
    return save_figure(fig, out)
