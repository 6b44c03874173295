"""Preprocessing: each step proved on images drawn here with Pillow, and every bad input refused."""

from __future__ import annotations

import functools
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import images
from cnnlab.data.datasets import ImageFolderDataset
from cnnlab.errors import ConfigError, ImageInputError
from cnnlab.preprocess import preprocess_image, stroke_width, to_model_input
from drawn import draw_digit, encode


def ink_box(t: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the nonzero pixels of a (1, H, W) uint8 tensor."""
    a = t[0].numpy() > 0
    rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def centre_of_mass(t: torch.Tensor) -> tuple[float, float]:
    a = t[0].numpy().astype(np.float64)
    return (a.sum(1) * np.arange(a.shape[0])).sum() / a.sum(), (
        a.sum(0) * np.arange(a.shape[1])
    ).sum() / a.sum()


def assert_mnist_form(t: torch.Tensor) -> None:
    """White ink on black, the ink fitted to 20 px, centred by mass at (14, 14)."""
    assert t.dtype == torch.uint8 and t.shape == (1, 28, 28)
    top, bottom, left, right = ink_box(t)
    assert max(bottom - top, right - left) in (20, 21)  # 20, plus at most a faint resampling fringe
    cy, cx = centre_of_mass(t)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    a = t[0].numpy()
    assert a.max() == 255
    ring = np.concatenate([a[:2].ravel(), a[-2:].ravel(), a[2:-2, :2].ravel(), a[2:-2, -2:].ravel()])
    assert (ring > 0).mean() < 0.1  # like MNIST, ink reaches the edge only where the mass pulls it


@pytest.mark.parametrize("digit", [0, 1, 4, 7])
def test_dark_on_light_is_inverted_and_centred(digit):
    p = preprocess_image(draw_digit(digit, ink=0, paper=255))
    assert p.inverted
    assert_mnist_form(p.tensor)
    names = [n for n, _ in p.steps]
    assert names[0] == "original" and "inverted" in names and names[-1].startswith("centred")


def test_light_on_dark_is_not_inverted():
    p = preprocess_image(draw_digit(3, ink=255, paper=0))
    assert not p.inverted
    assert "inverted" not in [n for n, _ in p.steps]
    assert_mnist_form(p.tensor)


def test_both_polarities_give_the_same_input():
    dark = preprocess_image(draw_digit(5, ink=0, paper=255)).tensor.int()
    light = preprocess_image(draw_digit(5, ink=255, paper=0)).tensor.int()
    assert (dark - light).abs().max() <= 1


@pytest.mark.parametrize(
    "box",
    [
        (0.0, 0.0, 0.2, 0.3),
        (0.75, 0.6, 0.98, 0.945),
        (0.18, 0.01, 0.82, 0.97),
        (0.45, 0.45, 0.52, 0.555),
    ],
)
def test_position_and_size_do_not_matter(box):
    """Off-centre in a corner, filling the image, or tiny: the same MNIST-form input."""
    ref = preprocess_image(draw_digit(2, size=(300, 300), box=(0.3, 0.2, 0.7, 0.8), width=14)).tensor
    width = max(1, round(14 * (box[3] - box[1]) / 0.6))  # the same pen, relative to the digit
    p = preprocess_image(draw_digit(2, size=(300, 300), box=box, width=width))
    assert_mnist_form(p.tensor)
    # same digit, same place: most of the ink overlaps the reference's
    a, b = p.tensor[0].float() / 255, ref[0].float() / 255
    assert (a * b).sum() / (a * a).sum().sqrt() / (b * b).sum().sqrt() > 0.8


def test_aspect_ratio_is_kept():
    """A wide bar stays wide: 20 px across, a few px high (not stretched to 20x20)."""
    img = Image.new("L", (400, 300), 255)
    img.paste(0, (50, 140, 350, 170))  # 300 x 30 bar
    top, bottom, left, right = ink_box(preprocess_image(img).tensor)
    assert right - left == 20 and 1 <= bottom - top <= 4


def test_thin_strokes_are_thickened():
    """A 1-px pen line in a 400 px image would be 0.05 px at 28x28: it is dilated first."""
    img = draw_digit(7, size=(400, 400), box=(0.1, 0.1, 0.9, 0.9), width=1)
    p = preprocess_image(img)
    assert p.thickened > 0 and any(n.startswith("thickened") for n, _ in p.steps)
    assert_mnist_form(p.tensor)
    a = p.tensor[0].numpy() / 255
    assert 1.2 <= stroke_width(a) <= 3.5  # MNIST's median is 1.84 px
    assert (a > 0.5).sum() >= 25  # the 7's two strokes are ~30 px long, so visible ink
    thick = preprocess_image(draw_digit(7, size=(400, 400), box=(0.1, 0.1, 0.9, 0.9), width=30))
    assert thick.thickened == 0


def test_noisy_paper_and_specks_are_removed():
    """A photo-like grey page with noise, a gradient of light, and a speck far away."""
    rng = np.random.default_rng(0)
    page = np.linspace(185, 215, 300)[None, :] + rng.normal(0, 6, (300, 300))
    ink = np.asarray(draw_digit(4, size=(300, 300), box=(0.3, 0.25, 0.65, 0.75), width=10)) < 128
    page[ink] = 50
    page[20:23, 270:273] = 120  # a speck in the corner
    p = preprocess_image(np.clip(page, 0, 255).astype(np.uint8))
    assert p.inverted
    assert_mnist_form(p.tensor)
    a = p.tensor[0].numpy()
    assert (a[:, :3] == 0).all() and (a[:, -3:] == 0).all()  # no noise left in the margins


def test_rgba_transparent_background():
    """Black strokes on a transparent canvas: alpha is flattened onto white, then inverted."""
    img = draw_digit(6, ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    p = preprocess_image(encode(img, "PNG"))
    assert p.inverted
    assert_mnist_form(p.tensor)


def test_rgba_white_strokes_on_transparent():
    """White strokes on transparency would vanish on white: they are flattened onto black."""
    img = draw_digit(6, ink=(255, 255, 255, 255), paper=(255, 255, 255, 0), mode="RGBA")
    p = preprocess_image(encode(img, "PNG"))
    assert_mnist_form(p.tensor)
    ref = preprocess_image(draw_digit(6, ink=255, paper=0)).tensor.int()
    assert (p.tensor.int() - ref).abs().max() <= 1


def test_exif_rotated_jpeg_is_turned_upright():
    """A JPEG stored sideways with EXIF orientation 6 (rotate 90 clockwise to view)."""
    stored = Image.new("L", (300, 200), 255)
    stored.paste(0, (40, 90, 260, 110))  # a horizontal bar as stored...
    exif = Image.Exif()
    exif[0x0112] = 6
    p = preprocess_image(encode(stored, "JPEG", exif=exif, quality=95))
    top, bottom, left, right = ink_box(p.tensor)
    assert bottom - top == 20 and right - left <= 5  # ...is a vertical bar once upright


def test_palette_gif_and_webp_decode_like_png():
    ref = preprocess_image(encode(draw_digit(9), "PNG")).tensor.int()
    gif = preprocess_image(encode(draw_digit(9).convert("P"), "GIF")).tensor.int()
    webp = preprocess_image(encode(draw_digit(9), "WEBP", lossless=True)).tensor.int()
    bmp = preprocess_image(encode(draw_digit(9), "BMP")).tensor.int()
    for t in (gif, webp, bmp):
        assert (t - ref).abs().max() <= 1


def test_path_input_and_steps(tmp_path):
    path = tmp_path / "eight.png"
    draw_digit(8, size=(1200, 900), width=40).save(path)
    p = preprocess_image(path)
    assert p.name == str(path)
    assert_mnist_form(p.tensor)
    assert all(max(img.size) <= 280 for _, img in p.steps)  # thumbnails, not full copies
    assert p.image.size == (28, 28)
    assert preprocess_image(path, keep_steps=False).steps == []


def test_mnist_form_passes_through_unchanged():
    """Preprocessing is idempotent: an image already in MNIST form comes out as it went in."""
    for digit in range(10):
        once = preprocess_image(draw_digit(digit, width=20)).tensor
        twice = preprocess_image(once[0].numpy()).tensor
        assert (once.int() - twice.int()).abs().max() <= 1


def test_other_input_sizes_and_channels():
    p = preprocess_image(draw_digit(1), "digits", (3, 56, 56))
    assert p.tensor.shape == (3, 56, 56)
    assert torch.equal(p.tensor[0], p.tensor[2])
    top, bottom, _, _ = ink_box(p.tensor[:1])
    assert bottom - top == 40  # 20/28 of the frame


def test_fit_matches_the_image_folder_transform(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
    img = Image.new("RGB", (90, 40), (200, 30, 30))
    img.paste((10, 200, 10), (10, 5, 50, 30))
    img.save(tmp_path / "cat" / "a.png")
    img.save(tmp_path / "dog" / "b.png")
    for channels in (1, 3):
        ds = ImageFolderDataset(tmp_path, "train", image_size=32, channels=channels, test_fraction=0)
        p = preprocess_image(tmp_path / "cat" / "a.png", "fit", (channels, 32, 32))
        assert torch.equal(p.tensor, ds.load_uint8(0))
        assert not p.inverted


def test_fit_dark_background_inverts_and_trims_a_product_photo():
    """Fashion-MNIST style: a dark shirt shape on a white page -> light on black, trimmed, 28 high."""
    img = Image.new("L", (300, 400), 250)
    img.paste(60, (100, 100, 200, 300))  # 100 x 200 body
    img.paste(60, (60, 100, 240, 140))  # sleeves
    p = preprocess_image(img, "fit", (1, 28, 28), dark_background=True)
    assert p.inverted
    top, bottom, left, right = ink_box(p.tensor)
    assert bottom - top == 28 and 24 <= right - left <= 26  # 180 x 200 -> 25 x 28
    assert p.tensor[0, 14, 14] > 150 and p.tensor[0, 0, 0] == 0
    plain = preprocess_image(img, "fit", (1, 28, 28))
    assert not plain.inverted and plain.tensor[0, 14, 0] == 0  # padding, not page


def test_to_model_input_matches_training_normalisation():
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    out = to_model_input(x, (0.1307,), (0.3081,))
    assert out.dtype == torch.float32 and out.shape == (2, 1, 28, 28)
    torch.testing.assert_close(out, (x.float() / 255 - 0.1307) / 0.3081)
    assert to_model_input(x[0], (0.5,), (0.5,)).shape == (1, 1, 28, 28)
    with pytest.raises(ConfigError):
        to_model_input(x.float(), (0.5,), (0.5,))


def test_bad_options():
    with pytest.raises(ConfigError, match="style"):
        preprocess_image(draw_digit(1), "sepia")
    with pytest.raises(ConfigError, match="shape"):
        preprocess_image(draw_digit(1), "digits", (2, 28, 28))
    with pytest.raises(ImageInputError, match="uint8"):
        preprocess_image(np.zeros((28, 28), dtype=np.float32))


# ----------------------------------------------------------------------------- bad inputs


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def png_bomb(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side x side pixels (400 Mpx) in a few tens of KB, built row by row."""
    comp = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte + packed zero bits
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def bad_inputs(tmp_path) -> dict[str, tuple[object, str]]:
    """name -> (source, what the error must say)."""
    good_png = encode(draw_digit(3), "PNG")
    (tmp_path / "notes.png").write_text("these are my notes, not a picture\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "cut.png").write_bytes(good_png[: len(good_png) // 2])
    (tmp_path / "scan.png").write_bytes(encode(draw_digit(3), "TIFF"))  # TIFF named .png
    (tmp_path / "icon.jpg").write_bytes(encode(draw_digit(3).resize((32, 32)), "ICO"))
    (tmp_path / "bomb.png").write_bytes(png_bomb())
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse: over the byte limit without writing 50 MB
        f.write(good_png)
        f.truncate(images.MAX_FILE_BYTES + 1)
    return {
        "notes.png": (tmp_path / "notes.png", "not an image"),
        "empty.png": (tmp_path / "empty.png", "empty"),
        "cut.png": (tmp_path / "cut.png", "truncated"),
        "scan.png": (tmp_path / "scan.png", "not an image"),
        "icon.jpg": (tmp_path / "icon.jpg", "not an image"),
        "bomb.png": (tmp_path / "bomb.png", "decompression bomb"),
        "huge.png": (huge, "byte limit"),
        "blank.png": (encode(Image.new("L", (50, 50), 255)), "no ink"),
        "missing.png": (tmp_path / "missing.png", "not a file"),
    }


def test_every_bad_input_is_refused_with_its_name(tmp_path):
    for name, (source, says) in bad_inputs(tmp_path).items():
        with pytest.raises(ImageInputError, match=says) as err:
            preprocess_image(source, name=name if isinstance(source, bytes) else None)
        assert name in str(err.value)


def test_bomb_bytes_and_oversize_images_are_refused():
    with pytest.raises(ImageInputError, match="bomb.*4096x4096"):
        preprocess_image(png_bomb(), name="bomb")
    with pytest.raises(ImageInputError, match="4096x4096"):
        preprocess_image(Image.new("L", (5000, 4000)))
    assert len(png_bomb()) < 200_000  # made cheaply, as a bomb is
    assert struct.unpack(">II", png_bomb()[16:24]) == (20000, 20000)  # what its header claims
