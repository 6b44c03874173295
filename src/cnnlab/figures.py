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

DPI = 110  # every PNG's resolution


def save_figure(fig, out: str | os.PathLike, dpi: int = DPI) -> Path:
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
    """A grid of images (tensor/array (N, C, H, W) or (N, H, W), uint8 or float) with titles.

    Grey images are scaled each to its own range, as `imshow` would; colour ones are shown as
    they are (floats in [0, 1] or uint8).
    """
    n = len(images)
    cols = cols or min(n, 6 if n <= 12 else 10)
    tiles = [image_tile(img) for img in images]
    return tile_grid(tiles, titles, out, cols, 1.6, suptitle, title_colors)


def image_tile(img):
    """One image (C, H, W) or (H, W), tensor or array, as RGBA floats (H, W, 4) for tile_grid."""
    import numpy as np

    arr = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        return colour_tile(arr, "gray")
    arr = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
    return np.concatenate([arr.clip(0, 1), np.ones_like(arr[..., :1])], axis=2)


def colour_tile(values, cmap: str, vmin: float | None = None, vmax: float | None = None):
    """A 2-D array through a colormap: RGBA floats (H, W, 4); the range defaults to its own."""
    import numpy as np

    values = np.asarray(values, dtype=np.float32)
    low = float(values.min()) if vmin is None else vmin
    high = float(values.max()) if vmax is None else vmax
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return matplotlib.colormaps[cmap](scaled.clip(0, 1))


def tile_grid(
    tiles: Sequence,
    titles: Sequence[str],
    out: str | os.PathLike,
    cols: int,
    tile_inches: float,
    suptitle: str | None = None,
    title_colors: Sequence[str] | None = None,
    fontsize: float = 9,
) -> Path:
    """RGBA tiles (h, w, 4), `cols` a row, a title above each, as one image in one Axes.

    An Axes per tile cost ~15 ms each to lay out and draw, most of a figure of 30-65 small maps
    (benchmarks/BENCHMARKS.md); tiles of other sizes are enlarged, nearest-neighbour, to one.
    """
    import numpy as np

    display = round(tile_inches * DPI)  # a tile's width in the PNG's pixels
    th = _common_size([t.shape[0] for t in tiles], display)
    tw = _common_size([t.shape[1] for t in tiles], display)
    px_per_inch = tw / tile_inches
    band = math.ceil(px_per_inch * fontsize * 1.7 / 72)  # the title's line above each tile
    gap = max(2, tw // 10)
    rows = math.ceil(len(tiles) / cols)
    pitch_x, pitch_y = tw + gap, th + band + gap
    canvas = np.zeros((rows * pitch_y, cols * pitch_x, 4), dtype=np.float32)  # transparent
    fig = plt.figure(figsize=(canvas.shape[1] / px_per_inch, canvas.shape[0] / px_per_inch))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    for i, (tile, title) in enumerate(zip(tiles, titles, strict=True)):
        r, c = divmod(i, cols)
        y, x = r * pitch_y + band, c * pitch_x + 1
        canvas[y - 1 : y + th + 1, x - 1 : x + tw + 1] = (0.6, 0.6, 0.6, 1.0)  # a thin frame
        canvas[y : y + th, x : x + tw] = _enlarge(tile, th, tw)
        colour = title_colors[i] if title_colors else "black"
        ax.text(x + tw / 2, y - 2, title, ha="center", va="bottom", fontsize=fontsize, color=colour)
    ax.imshow(canvas, interpolation="nearest")
    if suptitle:
        fig.suptitle(suptitle, y=1.0, va="bottom")
    return save_figure(fig, out)


def _common_size(sizes: Sequence[int], display: int) -> int:
    """One size all tiles enlarge to, near `display` pixels: a multiple of their least common
    multiple where that is small (every pixel the same width), else of the largest."""
    lcm = math.lcm(*sizes)
    base = lcm if lcm <= 8 * max(sizes) else max(sizes)
    return base * max(1, round(display / base))


def _enlarge(tile, th: int, tw: int):
    """Nearest-neighbour enlargement of an (h, w, 4) tile to (th, tw, 4)."""
    import numpy as np

    rows = (np.arange(th) * tile.shape[0]) // th
    cols = (np.arange(tw) * tile.shape[1]) // tw
    return tile[rows][:, cols]


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
