"""Any image -> the uint8 input a run's model expects, with every step kept for display.

Two styles, named by the dataset (`DatasetInfo.style`):

- "digits" (MNIST) repeats how MNIST itself was made: white ink on black, the ink's bounding
  box fitted into 20x20 keeping the aspect ratio, pasted into 28x28 and shifted so the centre
  of mass sits at pixel (14, 14) (measured on MNIST test: mean (13.99, 14.01), all within
  +-0.5). A user's photo of dark ink on paper, a digit drawn large or in a corner, or a thin
  pen stroke that would vanish at 28x28 all come out looking like MNIST; an image that already
  is in MNIST form comes out unchanged.
- "fit" (Fashion-MNIST, image folders): fit and pad, no centre-of-mass shift. For an image
  folder this is exactly the training transform (`ImageFolderDataset.load_uint8`); for a
  dark-background dataset (Fashion-MNIST: trimmed, fitted, negated product photos) a
  light-background photo is inverted and its plain border trimmed first.

`to_model_input` turns the uint8 result into the normalised float batch the model takes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from cnnlab.data.images import MAX_PIXELS, fit_and_pad, flatten_alpha, open_image
from cnnlab.errors import ConfigError, ImageInputError

STYLES = ("digits", "fit")
MNIST_BOX = 20 / 28  # MNIST's digit box relative to the frame (20 px in 28)
MNIST_CENTRE = 14.0  # where MNIST's centre of mass lies, in pixel indices (measured, see above)
WORK_SIZE = 160  # larger ink crops are max-pooled down to this first: keeps thin strokes, bounds cost
THIN_STROKE_PX = 1.5  # thicken strokes thinner than this at the final scale: resampling fades them
AT_SCALE_THIN_PX = 0.8  # ... but an image already at the final scale is not resampled: only below
# this (MNIST's own 1st percentile is 1.01 px, so MNIST passes through untouched)
TARGET_STROKE_PX = 1.9  # ... up to about MNIST's median stroke width (1.84 px)
STEP_THUMB = 280  # step images kept for display are at most this many pixels a side

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray


@dataclass
class Preprocessed:
    """The result of preprocessing one image.

    Attributes:
        tensor: uint8 (C, H, W), what the model sees before normalisation.
        steps: (name, PIL image) pairs in order, from the original to the model input, for
            display (large images are shrunk to thumbnails); empty when not kept.
        inverted: the image was light-background and got inverted.
        thickened: the dilation radius applied to thin strokes (0: none), in working pixels.
        name: the file name or label of the input.
    """

    tensor: torch.Tensor
    steps: list[tuple[str, Image.Image]] = field(default_factory=list)
    inverted: bool = False
    thickened: int = 0
    name: str = ""

    @property
    def image(self) -> Image.Image:
        """The model input as a PIL image (grey or RGB)."""
        arr = self.tensor.permute(1, 2, 0).numpy()
        return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def preprocess_image(
    source: ImageSource,
    style: str = "digits",
    input_shape: tuple[int, int, int] = (1, 28, 28),
    *,
    dark_background: bool = False,
    keep_steps: bool = True,
    name: str | None = None,
) -> Preprocessed:
    """Turn a file, bytes, PIL image or array into the uint8 input of a model.

    Args:
        source: a path, the file's bytes, a decoded PIL image, or a uint8 array (H, W[, C]).
        style: "digits" (MNIST procedure) or "fit" (fit and pad), as in `DatasetInfo.style`.
        input_shape: the model's (C, H, W).
        dark_background: for "fit": the dataset's images are light objects on black
            (Fashion-MNIST), so invert light-background photos and trim their border. Leave
            False for image folders, whose training transform is plain fit and pad.
        keep_steps: keep each step's image for display (costs a few small copies).
        name: a label for error messages (default: the path, or "upload").

    Returns:
        A `Preprocessed` with the uint8 (C, H, W) tensor and the steps.

    Raises:
        ImageInputError: the input is not a usable image, or (digits) holds no ink at all.
        ConfigError: unknown style or an input shape the style cannot produce.
    """
    if style not in STYLES:
        raise ConfigError(f"unknown preprocessing style {style!r}; choose one of {STYLES}")
    c, h, w = input_shape
    if c not in (1, 3) or h < 8 or w < 8:
        raise ConfigError(f"input shape {tuple(input_shape)} not supported: need (1 or 3, >=8, >=8)")
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "upload")
    img = _decode(source, label)
    steps = [("original", _thumb(img))] if keep_steps else None
    if style == "digits":
        out, inverted, radius = _digits(img, (h, w), steps, label)
        arr = np.repeat(out[None], c, axis=0)  # (C, H, W)
    else:
        out, inverted = _fit(img, (c, h, w), dark_background, steps)
        arr = out.reshape(h, w, -1).transpose(2, 0, 1).copy()  # (H, W, C) -> (C, H, W)
        radius = 0
    tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8))
    return Preprocessed(tensor, steps or [], inverted, radius, label)


def to_model_input(
    x: torch.Tensor, mean: tuple[float, ...] | list[float], std: tuple[float, ...] | list[float]
) -> torch.Tensor:
    """uint8 (C, H, W) or (B, C, H, W) -> normalised float32 (B, C, H, W), as in training."""
    if x.dtype != torch.uint8 or x.ndim not in (3, 4):
        raise ConfigError(
            f"expected a uint8 (C, H, W) or (B, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}"
        )
    x = x[None] if x.ndim == 3 else x
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x.float().div(255) - m) / s


# ----------------------------------------------------------------------------- decoding


def _decode(source: ImageSource, label: str) -> Image.Image:
    """Decode any accepted source to a loaded PIL image (safe decoding for files and bytes)."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3) or min(source.shape[:2]) < 1:
            raise ImageInputError(f"{label}: arrays must be uint8 (H, W) or (H, W, C)")
        arr = source[:, :, 0] if source.ndim == 3 and source.shape[2] == 1 else source
        img = Image.fromarray(np.ascontiguousarray(arr))
    else:
        return open_image(source, name=label)
    if img.width * img.height > MAX_PIXELS or min(img.size) < 1:
        raise ImageInputError(
            f"{label}: {img.width}x{img.height} pixels is outside 1..4096x4096", "too_large"
        )
    return img


def _thumb(img: Image.Image) -> Image.Image:
    """A display copy of at most STEP_THUMB pixels a side."""
    if max(img.size) <= STEP_THUMB:
        return img.copy()
    return ImageOps.contain(img, (STEP_THUMB, STEP_THUMB), method=Image.Resampling.BILINEAR)


def _to_gray(img: Image.Image, background: int) -> np.ndarray:
    """Flatten transparency onto `background` and return float32 grey in [0, 1], (H, W)."""
    x = np.array(flatten_alpha(img, background).convert("L"), dtype=np.float32)
    x /= 255  # in place: one (H, W) float copy, not two
    return x


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def _border(x: np.ndarray) -> np.ndarray:
    """The pixels of a ring about 3 % of the short side wide (at least 1 px)."""
    b = max(1, round(0.03 * min(x.shape)))
    return np.concatenate([x[:b].ravel(), x[-b:].ravel(), x[b:-b, :b].ravel(), x[b:-b, -b:].ravel()])


def _is_light_background(x: np.ndarray) -> bool:
    """More of what differs from the border (the background) is darker than it than brighter:
    dark ink on light paper. Differences within the paper's noise do not count."""
    border = _border(x)
    bg = float(np.median(border))
    noise = max(0.04, 3 * 1.4826 * float(np.median(np.abs(border - bg))))
    dev = x - bg
    darker = float(np.clip(-dev - noise, 0, None).sum())
    brighter = float(np.clip(dev - noise, 0, None).sum())
    return darker > brighter


def _otsu(x: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1] (256 bins)."""
    hist = np.bincount(np.clip((x * 255).astype(np.int64), 0, 255).ravel(), minlength=256)
    p = hist / max(1, hist.sum())
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    return float(np.nanargmax(between)) / 255 if np.isfinite(between).any() else 0.5


# ----------------------------------------------------------------------------- digits


def _digits(img: Image.Image, size: tuple[int, int], steps: list | None, label: str):
    """The MNIST procedure; returns (uint8 (H, W), inverted, dilation radius)."""
    x = _to_gray(img, 255)
    if _has_alpha(img) and np.ptp(x) < 0.03:  # white strokes on a transparent canvas
        x = _to_gray(img, 0)
    _step(steps, "grayscale", x)

    inverted = _is_light_background(x)
    if inverted:  # dark ink on light paper -> MNIST's white ink on black
        x = 1 - x
        _step(steps, "inverted", x)

    x = _remove_background(x)
    if x.max() <= 0:
        raise ImageInputError(f"{label}: no ink found (the image is blank or a single colour)", "no_ink")
    _step(steps, "background removed", x)

    top, bottom, left, right = _ink_box(x)
    x = x[top:bottom, left:right]
    _step(steps, "cropped to ink", x)

    if max(x.shape) > WORK_SIZE:  # max-pool keeps 1-px strokes that averaging would fade
        f = -(-max(x.shape) // WORK_SIZE)
        x = F.max_pool2d(torch.from_numpy(x)[None], f, f, ceil_mode=True)[0].numpy()

    box = max(1, round(MNIST_BOX * min(size)))
    radius = _thicken_radius(x, box / max(x.shape))
    if radius:
        t = F.pad(torch.from_numpy(x)[None, None], (radius,) * 4)  # room for the strokes to grow
        k = 2 * radius + 1
        t = F.max_pool2d(t, (k, 1), 1, (radius, 0))  # separable square dilation: rows, then cols
        x = F.max_pool2d(t, (1, k), 1, (0, radius))[0, 0].numpy()
        _step(steps, f"thickened ({k}x{k} dilation)", x)

    x = _fit_box(x, box)
    _step(steps, f"scaled into {box}x{box}", x)

    out = _centre_by_mass(x, size)
    _step(steps, f"centred by mass in {size[1]}x{size[0]}", out)
    return np.round(out * 255).astype(np.uint8), inverted, radius


def _remove_background(x: np.ndarray) -> np.ndarray:
    """Subtract the background (border level plus 3 sigma of its noise, at most Otsu), drop
    isolated noise pixels, and stretch the ink to reach 1; returns float in [0, 1]."""
    border = _border(x)
    bg = float(np.median(border))
    sigma = 1.4826 * float(np.median(np.abs(border - bg)))  # robust noise of the paper
    level = min(bg + 3 * sigma, _otsu(x)) if sigma > 0 else bg
    ink = x.max()
    if ink - level < 0.05:  # no contrast: nothing stands out from the background
        return np.zeros_like(x)
    x = np.clip((x - level) / (ink - level), 0, 1)
    if sigma > 0:  # noisy paper: a pixel above 3 sigma with < 2 such neighbours is noise
        on = torch.from_numpy((x > 0).astype(np.float32))[None, None]
        neighbours = F.avg_pool2d(on, 3, 1, 1, count_include_pad=True)[0, 0].numpy() * 9 - 1
        x = np.where(neighbours >= 2, x, 0).astype(np.float32)
    return x


def _ink_box(x: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the ink: the box of strong ink (> half the peak), grown
    while faint ink lies within a small margin of it (faint stroke ends, anti-aliasing), so
    that a speck further away does not count."""
    strong = x > 0.5 * x.max()
    rows, cols = np.flatnonzero(strong.any(1)), np.flatnonzero(strong.any(0))
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    ink = x > 0
    margin = 2 + round(0.02 * max(x.shape))
    while True:
        t0, l0 = max(0, box[0] - margin), max(0, box[2] - margin)
        near = ink[t0 : box[1] + margin, l0 : box[3] + margin]
        rows, cols = np.flatnonzero(near.any(1)), np.flatnonzero(near.any(0))
        grown = (t0 + int(rows[0]), t0 + int(rows[-1]) + 1, l0 + int(cols[0]), l0 + int(cols[-1]) + 1)
        if grown == box:
            return box
        box = grown


def stroke_width(x: np.ndarray) -> float:
    """Mean stroke width in pixels of ink in [0, 1]: 2 * area / perimeter of the ink > 0.5 mask
    (a stroke of width w and length L has area wL and perimeter about 2L)."""
    m = np.pad(x > 0.5 * x.max(), 1)
    area = int(m.sum())
    perimeter = int((m[:, 1:] != m[:, :-1]).sum() + (m[1:] != m[:-1]).sum())
    return 2 * area / perimeter if perimeter else 0.0


def _thicken_radius(x: np.ndarray, scale: float) -> int:
    """Dilation radius (working pixels) so that strokes are about TARGET_STROKE_PX at the end."""
    width = stroke_width(x)
    thin = AT_SCALE_THIN_PX if abs(scale - 1) < 0.06 else THIN_STROKE_PX
    if width * scale >= thin:
        return 0
    return max(1, int(np.ceil((TARGET_STROKE_PX / scale - width) / 2)))


def _fit_box(x: np.ndarray, box: int) -> np.ndarray:
    """Resize so the longer side is `box` (aspect kept, Lanczos), ink peak back to 1."""
    h, w = x.shape
    scale = box / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new != (w, h):  # an MNIST digit is already 20 px: no resampling, so it passes unchanged
        img = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32))
        x = np.asarray(img.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0))
        x = np.clip(x, 0, None)
        x = x / x.max() if x.max() > 0 else x
    return x


def _centre_by_mass(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Paste x centred in a black (H, W) frame, then shift whole pixels so its centre of mass
    is at MNIST's (14, 14) (scaled to the frame), keeping all ink inside the frame."""
    fh, fw = size
    h, w = x.shape
    top, left = (fh - h) // 2, (fw - w) // 2
    mass = x.sum()
    cy = (x.sum(1) * np.arange(h)).sum() / mass + top
    cx = (x.sum(0) * np.arange(w)).sum() / mass + left
    target_y, target_x = MNIST_CENTRE * fh / 28, MNIST_CENTRE * fw / 28
    dy = int(np.clip(round(target_y - cy), -top, fh - h - top))
    dx = int(np.clip(round(target_x - cx), -left, fw - w - left))
    out = np.zeros(size, dtype=np.float32)
    out[top + dy : top + dy + h, left + dx : left + dx + w] = x
    return out


def _step(steps: list | None, name: str, x: np.ndarray) -> None:
    """Keep a display copy of a float [0, 1] (H, W) step."""
    if steps is not None:
        steps.append((name, _thumb(Image.fromarray(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)))))


# ----------------------------------------------------------------------------- fit


def _fit(img: Image.Image, shape: tuple[int, int, int], dark_background: bool, steps: list | None):
    """Fit and pad; returns (uint8 (H, W) or (H, W, 3), inverted)."""
    c, h, w = shape
    img = flatten_alpha(img).convert("L" if c == 1 else "RGB")
    inverted = False
    if dark_background:
        gray = np.asarray(img.convert("L"), dtype=np.float32) / 255
        inverted = _is_light_background(gray)
        if inverted:  # a product on white -> Fashion-MNIST's light object on black
            img, gray = ImageOps.invert(img), 1 - gray
            _step(steps, "inverted", gray)
        border = _border(gray)
        bg = float(np.median(border))
        noise = 3 * 1.4826 * float(np.median(np.abs(border - bg)))  # 0 on a clean black field
        obj = np.abs(gray - bg) > noise  # a Fashion-MNIST image's own faint edges count as object
        if obj.any():  # trim the plain border, as Fashion-MNIST's pipeline did
            rows, cols = np.flatnonzero(obj.any(1)), np.flatnonzero(obj.any(0))
            img = img.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
            if steps is not None:
                steps.append(("trimmed", _thumb(img)))
    fill = 0 if c == 1 else (0, 0, 0)
    if dark_background:  # Fashion-MNIST put an odd margin's extra pixel before the object
        fitted = ImageOps.contain(img, (w, h), method=Image.Resampling.LANCZOS)
        out = Image.new(fitted.mode, (w, h), fill)
        out.paste(fitted, ((w - fitted.width + 1) // 2, (h - fitted.height + 1) // 2))
    else:  # exactly the image-folder training transform
        out = fit_and_pad(img, (w, h), fill=fill)
    if steps is not None:
        steps.append((f"fitted into {w}x{h}", out.copy()))
    return np.asarray(out, dtype=np.uint8), inverted
