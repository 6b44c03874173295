"""Digits drawn with Pillow lines, the way a person writes them, for preprocessing and
prediction tests (no fonts needed, so the tests run on any machine)."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw, ImageFont


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

# Other ways people write some digits: a plain 1, an open 4, a crossed 7, a curled 9, a 2 with
# a straight neck, a flat-topped 3.
OTHER_STROKES = {
    1: [[(0.5, 0.03), (0.5, 0.97)]],
    2: [_arc(0.5, 0.28, 0.3, 0.24, 180, 380), [(0.78, 0.4), (0.2, 0.96), (0.85, 0.94)]],
    3: [[(0.2, 0.05), (0.78, 0.05), (0.45, 0.42)], _arc(0.45, 0.7, 0.34, 0.27, 260, 510)],
    4: [[(0.45, 0.03), (0.15, 0.6), (0.85, 0.6)], [(0.68, 0.35), (0.68, 0.97)]],
    7: [[(0.12, 0.05), (0.88, 0.05), (0.42, 0.97)], [(0.35, 0.5), (0.8, 0.5)]],
    9: [_arc(0.48, 0.3, 0.28, 0.25, 0, 360), _arc(0.48, 0.62, 0.28, 0.35, 0, 100)],
}


def draw_digit(
    digit: int,
    size: tuple[int, int] = (200, 200),
    box: tuple[float, float, float, float] = (0.2, 0.1, 0.8, 0.9),
    width: int = 12,
    ink: int | tuple = 0,
    paper: int | tuple = 255,
    mode: str = "L",
    slant: float = 0.0,
    other: bool = False,
) -> Image.Image:
    """A digit drawn with lines of `width` px inside `box` (fractions of the image: x0, y0, x1,
    y1), leaning right by `slant` (0.2: the top moves right by a fifth of the box's width);
    `other` draws the second way of writing it (OTHER_STROKES) when there is one."""
    img = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box[0] * size[0], box[1] * size[1], box[2] * size[0], box[3] * size[1]
    strokes = OTHER_STROKES.get(digit, STROKES[digit]) if other else STROKES[digit]
    for line in strokes:
        pts = [(x0 + (px + slant * (0.5 - py)) * (x1 - x0), y0 + py * (y1 - y0)) for px, py in line]
        draw.line(pts, fill=ink, width=width, joint="curve")
        r = width / 2  # round caps, like a pen
        for x, y in (pts[0], pts[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    return img


def font_digit(
    digit: int,
    size: tuple[int, int] = (200, 200),
    height: int = 120,
    at=(0.5, 0.5),
    ink: int = 0,
    paper: int = 255,
) -> Image.Image:
    """A digit typeset in Pillow's bundled font (no system fonts needed), centred at `at`."""
    img = Image.new("L", size, paper)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=height)
    draw.text((at[0] * size[0], at[1] * size[1]), str(digit), fill=ink, font=font, anchor="mm")
    return img


def encode(img: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    """The image's bytes in a file format."""
    buf = io.BytesIO()
    img.save(buf, fmt, **save_args)
    return buf.getvalue()
