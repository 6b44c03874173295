"""Digits drawn with Pillow lines, the way a person writes them, for preprocessing and
prediction tests (no fonts needed, so the tests run on any machine)."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw


def _arc(cx, cy, rx, ry, start, end, n=24):
    """Points on an ellipse from angle `start` to `end` (degrees, 0 = right, 90 = down)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in (start + (end - start) * i / n for i in range(n + 1))
    ]


# Each digit is a list of polylines in a unit box (x right, y down).
STROKES = {
    0: [_arc(0.5, 0.5, 0.3, 0.45, 0, 360)],
    1: [[(0.38, 0.18), (0.55, 0.03), (0.55, 0.97)]],
    2: [_arc(0.5, 0.3, 0.3, 0.25, 190, 360) + [(0.8, 0.38), (0.18, 0.95), (0.85, 0.95)]],
    3: [_arc(0.45, 0.27, 0.3, 0.22, 210, 450), _arc(0.45, 0.72, 0.34, 0.25, 270, 510)],
    4: [[(0.6, 0.97), (0.6, 0.03), (0.12, 0.66), (0.88, 0.66)]],
    5: [[(0.82, 0.04), (0.3, 0.04), (0.25, 0.45)], _arc(0.47, 0.68, 0.33, 0.28, 225, 480)],
    6: [[(0.72, 0.04), (0.38, 0.3), (0.22, 0.7)], _arc(0.5, 0.72, 0.28, 0.24, 0, 360)],
    7: [[(0.12, 0.05), (0.88, 0.05), (0.42, 0.97)]],
    8: [_arc(0.5, 0.26, 0.24, 0.22, 0, 360), _arc(0.5, 0.73, 0.3, 0.25, 0, 360)],
    9: [_arc(0.48, 0.3, 0.28, 0.25, 0, 360), [(0.76, 0.3), (0.72, 0.97)]],
}


def draw_digit(
    digit: int,
    size: tuple[int, int] = (200, 200),
    box: tuple[float, float, float, float] = (0.2, 0.1, 0.8, 0.9),
    width: int = 12,
    ink: int | tuple = 0,
    paper: int | tuple = 255,
    mode: str = "L",
) -> Image.Image:
    """A digit drawn with lines of `width` px inside `box` (fractions of the image: x0, y0, x1, y1)."""
    img = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box[0] * size[0], box[1] * size[1], box[2] * size[0], box[3] * size[1]
    for line in STROKES[digit]:
        pts = [(x0 + px * (x1 - x0), y0 + py * (y1 - y0)) for px, py in line]
        draw.line(pts, fill=ink, width=width, joint="curve")
        r = width / 2  # round caps, like a pen
        for x, y in (pts[0], pts[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    return img


def encode(img: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    """The image's bytes in a file format."""
    buf = io.BytesIO()
    img.save(buf, fmt, **save_args)
    return buf.getvalue()
