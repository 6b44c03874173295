"""Pictures of predictions and explanations, written as PNG files (atomically).

`prediction_preview` is plain Pillow (fast enough for thousands of files); the explanation
figures use matplotlib (Agg) through `cnnlab.figures.save_figure`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from cnnlab import io

PREVIEW_SIDE = 196  # each panel of a preview: 28 x 7, so the model input is shown pixel-exact


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _save_png(img: Image.Image, out: str | os.PathLike) -> Path:
    """Write a PIL image as PNG atomically."""
    return io.atomic_write(out, lambda part: img.save(part, format="PNG"))


def prediction_preview(prediction, out: str | os.PathLike) -> Path:
    """The original beside the model's input (enlarged, pixel-exact), with the top classes.

    Args:
        prediction: a `predict.Prediction` whose `preprocessed.steps` were kept.
        out: the PNG to write.
    """
    side = PREVIEW_SIDE
    steps = prediction.preprocessed.steps if prediction.preprocessed else []
    original = steps[0][1] if steps else None
    x = prediction.input.permute(1, 2, 0).numpy()  # (H, W, C)
    seen = Image.fromarray(x[:, :, 0] if x.shape[2] == 1 else x).convert("RGB")
    scale = max(1, side // max(seen.size))
    seen = seen.resize((seen.width * scale, seen.height * scale), Image.Resampling.NEAREST)
    font, small = _font(15), _font(12)
    canvas = Image.new("RGB", (2 * side + 30, side + 70), "white")
    draw = ImageDraw.Draw(canvas)
    if original is not None:
        thumb = ImageOps.contain(original.convert("RGB"), (side, side))
        canvas.paste(thumb, (10 + (side - thumb.width) // 2, 26 + (side - thumb.height) // 2))
    canvas.paste(seen, (20 + side + (side - seen.width) // 2, 26 + (side - seen.height) // 2))
    draw.text((10, 6), "your image", fill="black", font=small)
    h, w = prediction.input.shape[1:]
    draw.text((20 + side, 6), f"what the model sees ({w}x{h})", fill="black", font=small)
    label, prob = prediction.top[0]
    draw.text((10, side + 32), f"{label}  {prob:.1%}", fill=(0, 90, 0), font=font)
    rest = "   ".join(f"{c} {p:.1%}" for c, p in prediction.top[1:])
    draw.text(
        (10, side + 52),
        (rest + "   " if rest else "") + Path(prediction.name).name,
        fill=(90, 90, 90),
        font=small,
    )
    return _save_png(canvas, out)


def safe_name(text: str) -> str:
    """A file-name-safe version of a layer or file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


# ----------------------------------------------------------------------------- explain figures


def _plt():
    from cnnlab import figures  # matplotlib with the Agg backend

    return figures.plt, figures.save_figure


def _show(ax, img, title: str, cmap="gray", vmin=None, vmax=None, fontsize=8):
    ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def _input_image(prediction) -> np.ndarray:
    x = prediction.input.permute(1, 2, 0).numpy()
    return x[:, :, 0] if x.shape[2] == 1 else x


def steps_figure(prediction, out: str | os.PathLike) -> Path:
    """Each preprocessing step, left to right, and the top-k probabilities as bars."""
    plt, save_figure = _plt()
    steps = prediction.preprocessed.steps
    n = len(steps)
    # constrained layout leaves the suptitle its own row above the panel titles
    fig = plt.figure(figsize=(2.1 * n + 3.2, 3.0), layout="constrained")
    grid = fig.add_gridspec(1, n + 2, width_ratios=[1] * n + [0.2, 1.5])
    for i, (name, img) in enumerate(steps):
        ax = fig.add_subplot(grid[0, i])
        arr = np.asarray(img)
        _show(ax, arr, f"{i + 1}. {name}", cmap="gray" if arr.ndim == 2 else None, fontsize=8)
    ax = fig.add_subplot(grid[0, n + 1])
    labels = [c for c, _ in prediction.top][::-1]
    probs = [p for _, p in prediction.top][::-1]
    ax.barh(range(len(probs)), probs, color=["#999"] * (len(probs) - 1) + ["#2a7"])
    ax.set_yticks(range(len(probs)), labels)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    for i, p in enumerate(probs):
        ax.text(min(p + 0.02, 0.75), i, f"{p:.1%}", va="center", fontsize=8)
    label, prob = prediction.top[0]
    fig.suptitle(f"{Path(prediction.name).name}: the model sees {label} ({prob:.1%})")
    return save_figure(fig, out)


def feature_maps_figure(
    prediction, layer, maps: torch.Tensor, out: str | os.PathLike, max_maps: int = 64
) -> Path:
    """The model input, then one panel per channel of a layer's maps (C, h, w)."""
    from cnnlab import figures

    c, h, w = maps.shape
    n = min(c, max_maps)
    vmax = float(maps[:n].max()) if maps.numel() else 1.0
    vmin = min(0.0, float(maps[:n].min()))
    tiles = [figures.image_tile(prediction.input)]
    tiles += [figures.colour_tile(maps[i].numpy(), "magma", vmin, vmax) for i in range(n)]
    titles = ["input", *(f"ch {i}" for i in range(n))]
    more = f" (first {n} shown)" if n < c else ""
    suptitle = f"{layer.name}: {layer.description}\n{c} feature maps of {h}x{w}{more}; bright = strong"
    return figures.tile_grid(tiles, titles, out, min(n + 1, 9), 1.2, suptitle, fontsize=8)


def filters_figure(
    name: str, weights: torch.Tensor, out: str | os.PathLike, trained: bool = True
) -> Path:
    """First-layer kernels (out, in, kh, kw): red positive, blue negative, one scale for all.
    `trained=False` titles them frozen (set from the data, not learned)."""
    from cnnlab import figures

    o, i, kh, kw = weights.shape
    lim = float(weights.abs().max()) or 1.0
    kernels = weights.mean(1) if i > 1 else weights[:, 0]  # colour inputs: the channel mean
    tiles = [figures.colour_tile(k.numpy(), "RdBu_r", -lim, lim) for k in kernels]
    chans = "" if i == 1 else f" (mean over {i} input channels)"
    kind = "learned" if trained else "frozen (set from the data, not trained)"
    suptitle = f"{name}: {o} {kind} {kh}x{kw} filters{chans}; red +, blue -"
    titles = [f"filter {k}" for k in range(o)]
    return figures.tile_grid(tiles, titles, out, min(o, 8), 1.05, suptitle, fontsize=8)


def attribution_figure(
    prediction, saliency: torch.Tensor, occlusion: torch.Tensor, out: str | os.PathLike
) -> Path:
    """Input, saliency, saliency over the input, and the occlusion map, side by side."""
    plt, save_figure = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(10.5, 3.1), layout="constrained")
    img = _input_image(prediction)
    _show(axes[0], img, "model input")
    _show(axes[1], saliency.numpy(), "saliency |d score / d pixel|", cmap="hot", vmin=0, vmax=1)
    gray = img if img.ndim == 2 else img.mean(2)
    _show(axes[2], gray, "saliency over the input")
    axes[2].imshow(saliency.numpy(), cmap="hot", alpha=0.55, interpolation="nearest")
    lim = float(occlusion.abs().max()) or 1e-6
    _show(
        axes[3],
        occlusion.numpy(),
        "occlusion: probability lost\nwhen covered (red)",
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
    )
    label, prob = prediction.top[0]
    fig.suptitle(f"which pixels made the model say {label} ({prob:.1%})")
    return save_figure(fig, out)


def write_explanation(explanation, out_dir: str | os.PathLike) -> list[tuple[str, Path]]:
    """Write every figure of an `explain.Explanation` into out_dir, numbered in reading order.

    Returns:
        (what it shows, path) pairs.
    """
    out_dir = Path(out_dir)
    e = explanation
    written = [("preprocessing and prediction", steps_figure(e.prediction, out_dir / "01_input.png"))]
    written.append(
        (
            "saliency and occlusion",
            attribution_figure(e.prediction, e.saliency, e.occlusion, out_dir / "02_attribution.png"),
        )
    )
    if e.filters is not None:
        name, weights, trained = e.filters
        written.append(
            (
                f"first-layer filters ({name})",
                filters_figure(name, weights, out_dir / "03_filters.png", trained),
            )
        )
    for i, layer in enumerate(e.layers):
        maps = e.maps[layer.name]
        if maps.shape[-1] * maps.shape[-2] <= 1:  # a global pool: one number per channel
            continue
        path = out_dir / f"{i + 4:02d}_{layer.kind}_{safe_name(layer.name)}.png"
        c, h, w = maps.shape
        written.append(
            (f"{layer.name} ({c} maps of {h}x{w})", feature_maps_figure(e.prediction, layer, maps, path))
        )
    return written
