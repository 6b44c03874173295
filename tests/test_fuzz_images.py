"""Fuzzing the image decoder: mutated PNG/JPEG/GIF/BMP/WebP bytes through open_image and on.

Every input either decodes into a usable image or raises ImageInputError; no other exception
(Pillow raises many types from its plugins) may escape, and memory stays bounded.
"""

from __future__ import annotations

import importlib.util
import io
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from tests.fuzzing import fuzz_settings, memory_cap, mutated, record

from cnnlab.data import images
from cnnlab.errors import CnnlabError, ImageInputError

pytestmark = [
    pytest.mark.fuzz,
    # Pillow warns (and carries on) on corrupt EXIF blocks: expected with mutated JPEG/WebP
    pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin"),
]

# a 4096x4096 RGBA image (the pixel cap) plus Pillow's working copies
AS_HEADROOM = 1 << 30


def _digit(mode: str = "L", size=(20, 16)) -> Image.Image:
    """A small drawn '7': dark ink on white, in `mode`."""
    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).line([(3, 3), (15, 3), (7, 14)], fill=0, width=2)
    return img.convert(mode)


def _encode(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    """One small valid file per format and the features their decoders treat specially."""
    rgba = _digit("RGBA")
    rgba.putalpha(_digit("L").point(lambda v: 255 - v))  # transparent background
    palette = _digit("P")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    frame2 = _digit("L").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return {
        "PNG grey": _encode(_digit(), "PNG"),
        "PNG RGBA": _encode(rgba, "PNG"),
        "PNG palette+transparency": _encode(palette, "PNG", transparency=255),
        "PNG 16-bit": _encode(_digit("I;16"), "PNG"),
        "JPEG": _encode(_digit("RGB"), "JPEG", quality=80),
        "JPEG EXIF rotated": _encode(_digit("RGB"), "JPEG", exif=exif.tobytes()),
        "JPEG progressive": _encode(_digit("L"), "JPEG", progressive=True),
        "GIF 2 frames": _encode(_digit("P"), "GIF", save_all=True, append_images=[frame2.convert("P")]),
        "BMP": _encode(_digit("RGB"), "BMP"),
        "BMP palette": _encode(_digit("P"), "BMP"),
        "WebP lossless": _encode(rgba, "WEBP", lossless=True),
        "WebP lossy": _encode(_digit("RGB"), "WEBP", quality=60),
    }


SEEDS = _seeds()
HAS_PREPROCESS = importlib.util.find_spec("cnnlab.preprocess") is not None


def decode_all_ways(data: bytes, target: str) -> None:
    """open_image, then what an image folder and (when present) preprocess do with it."""
    outcome = "decoded"
    try:
        with memory_cap(AS_HEADROOM):
            img = images.open_image(data, name="fuzz.img")
            assert img.width * img.height <= images.MAX_PIXELS
            flat = images.flatten_alpha(img)
            assert flat.mode in ("RGB", "L")
            grey = images.fit_and_pad(flat.convert("L"), (28, 28))
            assert grey.size == (28, 28) and np.asarray(grey).dtype == np.uint8
            if HAS_PREPROCESS:
                from cnnlab.preprocess import preprocess_image

                for style in ("digits", "fit"):
                    try:
                        out = preprocess_image(data, style, keep_steps=False, name="fuzz.img")
                        assert tuple(out.tensor.shape) == (1, 28, 28)
                    except ImageInputError:  # e.g. "digits" finds no ink: a clear refusal
                        pass
    except ImageInputError as e:
        assert "fuzz.img" in str(e)  # names the input
        outcome = "ImageInputError"
    record(target, outcome)


@fuzz_settings(scale=2)
@given(data=st.one_of(*(mutated(seed, max_ops=3, hot=96) for seed in SEEDS.values())))
def test_mutated_images(data):
    decode_all_ways(data, "image decoder: mutated PNG/JPEG/GIF/BMP/WebP")


@fuzz_settings(scale=0.5)
@given(fmt=st.sampled_from(sorted(SEEDS)), cut=st.floats(0, 1))
def test_truncated_images(fmt, cut):
    data = SEEDS[fmt]
    decode_all_ways(data[: int(len(data) * cut)], "image decoder: truncated files")


@fuzz_settings(scale=0.5)
@given(
    data=st.binary(max_size=400),
    magic=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF"]),
)
def test_random_bytes_behind_a_magic(data, magic):
    decode_all_ways(magic + data, "image decoder: random bytes behind each format's magic")


def test_seeds_decode():
    """The unmutated seeds are valid: the fuzzer starts from real files."""
    for name, data in SEEDS.items():
        img = images.open_image(data, name=name)
        assert img.size in ((20, 16), (16, 20)), name  # EXIF orientation 6 turns it


@pytest.mark.parametrize("size", [(5000, 5000), (4097, 4096), (2**31 - 1, 1)])
def test_huge_declared_sizes_are_refused_before_decoding(size):
    """A PNG header declaring more than the 4096x4096 cap: refused by its header alone."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", *size, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    with memory_cap(64 << 20), pytest.raises(CnnlabError, match="over the limit|bomb"):
        images.open_image(png, name="big.png")
    record("image decoder: headers over the pixel cap", "ImageInputError")


def _place(entry: str, data: bytes, path) -> None:
    """Put one hostile entry at `path`: image bytes, a folder with an image's name, a link."""
    if entry == "bytes":
        path.write_bytes(data)
    elif entry == "folder":
        path.mkdir()
    elif entry == "unreadable link":  # reading it fails with EIO, whatever its permissions
        path.symlink_to("/proc/self/mem")
    else:  # a dangling link
        path.symlink_to(path.parent / "nowhere")


ENTRIES = ["bytes", "bytes", "folder", "dangling link"] + (
    ["unreadable link"] if os.path.isfile("/proc/self/mem") else []
)


@fuzz_settings(scale=0.25)
@given(
    entries=st.lists(
        st.tuples(st.sampled_from(ENTRIES), st.one_of(*(mutated(s, max_ops=2) for s in SEEDS.values()))),
        min_size=1,
        max_size=3,
    )
)
def test_hostile_files_in_an_image_folder(tmp_path_factory, entries):
    """Files on disk, not bytes: each path through open_image, then the folder as a dataset.
    The folder either loads whole or is refused in one line naming a file in it."""
    from cnnlab.data.datasets import ImageFolderDataset
    from cnnlab.errors import DatasetFormatError

    root = tmp_path_factory.mktemp("folder")
    for cls, seed in (("a", "PNG grey"), ("b", "JPEG")):
        (root / cls).mkdir()
        (root / cls / "good.png").write_bytes(SEEDS[seed])
    for i, (entry, data) in enumerate(entries):
        path = root / "ab"[i % 2] / f"x{i}.png"
        _place(entry, data, path)
        try:
            images.open_image(path)
        except ImageInputError as e:
            assert str(e).startswith(f"{path}: ")
    try:
        ds = ImageFolderDataset(root, "train", test_fraction=0)
        assert all(ds.load_uint8(i).shape == (1, 28, 28) for i in range(len(ds)))
        record("image folder: hostile files on disk", "loaded")
    except DatasetFormatError as e:
        assert "\n" not in str(e) and str(e).startswith(str(root))
        record("image folder: hostile files on disk", "DatasetFormatError naming the file")
