"""Draw the sample digits in this folder (the README's `predict`, `explain` and curl examples).

    python examples/images/make_samples.py        # rewrites the files next to this script

Each digit is a few Pillow pen strokes, the way a person writes it, so no font is needed:
  - three_ink_on_white.png:  dark ink on white paper (a scan);
  - seven_light_on_black.png: light strokes on black (MNIST's own polarity);
  - two_photo.jpg:            grey paper, noise, a slight rotation, saved as JPEG (a phone photo);
  - four_in_corner.png:       a small digit in the corner of a big page.
The output is the same on every run (seeded noise).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def _arc(cx, cy, rx, ry, start, end, n=24):
    """Points on an ellipse from angle `start` to `end` (degrees, 0 = right, 90 = down)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in (start + (end - start) * i / n for i in range(n + 1))
    ]


# polylines in a unit box (x right, y down)
STROKES = {
    2: [_arc(0.5, 0.3, 0.3, 0.25, 190, 360) + [(0.8, 0.38), (0.18, 0.95), (0.85, 0.95)]],
    3: [_arc(0.45, 0.27, 0.3, 0.22, 210, 450), _arc(0.45, 0.72, 0.34, 0.25, 270, 510)],
    4: [[(0.6, 0.97), (0.6, 0.03), (0.12, 0.66), (0.88, 0.66)]],
    7: [[(0.12, 0.05), (0.88, 0.05), (0.42, 0.97)]],
}


def draw(digit: int, size: int, box: tuple[float, float, float, float], width: int, ink, paper):
    """An L-mode image of `digit` drawn inside `box` (fractions of the side: x0, y0, x1, y1)."""
    img = Image.new("L", (size, size), paper)
    pen = ImageDraw.Draw(img)
    x0, y0, x1, y1 = (v * size for v in box)
    for line in STROKES[digit]:
        points = [(x0 + x * (x1 - x0), y0 + y * (y1 - y0)) for x, y in line]
        pen.line(points, fill=ink, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round pen ends
            pen.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=ink)
    return img


def photo(img: Image.Image, seed: int = 0) -> Image.Image:
    """Grey uneven paper, sensor noise and a 6-degree tilt, as a phone would see it."""
    rng = np.random.default_rng(seed)
    tilted = np.asarray(img.rotate(6, resample=Image.Resampling.BICUBIC, fillcolor=225), float)
    shade = np.linspace(0.95, 0.8, img.width)[None, :]  # light falls off across the page
    noisy = tilted * shade + rng.normal(0, 12, tilted.shape)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).convert("RGB")


def main() -> None:
    draw(3, 160, (0.25, 0.12, 0.75, 0.88), 11, ink=20, paper=255).save(HERE / "three_ink_on_white.png")
    draw(7, 112, (0.2, 0.15, 0.8, 0.85), 9, ink=255, paper=0).save(HERE / "seven_light_on_black.png")
    photo(draw(2, 160, (0.25, 0.15, 0.75, 0.85), 13, ink=40, paper=235)).save(
        HERE / "two_photo.jpg", quality=80
    )
    draw(4, 240, (0.06, 0.06, 0.3, 0.36), 7, ink=0, paper=255).save(HERE / "four_in_corner.png")


if __name__ == "__main__":
    main()
