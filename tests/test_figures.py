"""The tile grid behind errors.png, `data show`, the demo's samples and explain's maps/filters."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cnnlab import figures


def _pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)


def _count(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 8) -> int:
    return int((np.abs(pixels - np.array(rgb)).max(1) <= tol).sum())


def test_tiles_of_other_sizes_are_enlarged_to_one_and_keep_their_colours(tmp_path):
    red = np.zeros((5, 5, 4), np.float32)
    red[..., 0] = red[..., 3] = 1.0
    green = np.zeros((28, 28, 4), np.float32)
    green[..., 1] = green[..., 3] = 1.0
    out = figures.tile_grid([red, green], ["red", "green"], tmp_path / "t.png", 2, 1.2, "two")
    pixels = _pixels(out)
    tile = round(1.2 * figures.DPI) ** 2
    # both tiles at one size (~132 px square), nearest-neighbour: their colours stay pure
    assert 0.8 * tile < _count(pixels, (255, 0, 0)) <= 1.05 * tile
    assert 0.8 * tile < _count(pixels, (0, 255, 0)) <= 1.05 * tile


def test_image_grid_scales_grey_images_each_to_its_range_and_shows_colour_as_it_is(tmp_path):
    grey = torch.full((1, 8, 8), 0.2)
    grey[0, :, 4:] = 0.4  # a dim image: shown black and white, as imshow would scale it
    rgb_float = torch.zeros(3, 8, 8)
    rgb_float[2] = 1.0  # blue
    rgb_uint8 = torch.zeros(3, 8, 8, dtype=torch.uint8)
    rgb_uint8[0] = 255  # red
    out = figures.image_grid(
        [grey, rgb_float, rgb_uint8], ["grey", "blue", "red"], tmp_path / "g.png", cols=3
    )
    pixels = _pixels(out)
    for colour in ((0, 0, 0), (255, 255, 255), (0, 0, 255), (255, 0, 0)):
        assert _count(pixels, colour, tol=2) > 1000, colour


def test_colour_tile_uses_the_range_given_or_its_own():
    values = np.array([[0.0, 1.0], [2.0, 4.0]])
    own = figures.colour_tile(values, "gray")
    assert own.shape == (2, 2, 4) and own[0, 0, 0] == 0.0 and own[1, 1, 0] == 1.0
    fixed = figures.colour_tile(values, "gray", 0.0, 8.0)  # 4 is half of that range
    assert abs(fixed[1, 1, 0] - 0.5) < 0.02
    flat = figures.colour_tile(np.ones((3, 3)), "gray")  # no range: all one colour, no NaN
    assert np.isfinite(flat).all()
