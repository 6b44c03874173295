"""Feature maps on the page: one shared scale per layer that a few hot pixels cannot darken."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from cnnlab.web.payload import feature_map_urls


def brightness(url: str) -> float:
    png = base64.b64decode(url.split(",", 1)[1])
    return float(np.asarray(Image.open(io.BytesIO(png))).mean())


def test_one_hot_pixel_does_not_darken_every_map():
    torch.manual_seed(0)
    maps = torch.rand(16, 28, 28)  # activations in [0, 1)
    maps[3, 5, 5] = 50.0  # one outlier, as a ReLU layer can have
    urls, (lo, hi) = feature_map_urls(maps)
    assert len(urls) == 16 and hi < 2 and lo >= 0
    typical = sorted(brightness(u) for u in urls)[8]
    assert typical > 100  # mid-grey on average, not the near-black of a max scale (~1/50 of it)


def test_the_scale_is_shared_so_a_weak_map_stays_dark():
    maps = torch.ones(2, 8, 8)
    maps[1] *= 0.1
    urls, _ = feature_map_urls(maps)
    assert brightness(urls[0]) > 5 * brightness(urls[1])
