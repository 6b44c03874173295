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


def save_figure(fig, out: str | os.PathLike, dpi: int = 110) -> Path:
    """Save atomically (`.part` then rename) and close the figure."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    try:
        fig.savefig(part, dpi=dpi, bbox_inches="tight", format="png")
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
        plt.close(fig)
    return out


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
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
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
    fig.tight_layout()
    return save_figure(fig, out)
