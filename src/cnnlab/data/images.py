"""Safe decoding of user image files: the one place Pillow reads bytes we did not make.

Formats are checked by content (Pillow's sniffing), not by file name; only an allow-list is
accepted; a pixel cap refuses huge images and decompression bombs before they are decoded.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import ImageInputError

ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
MAX_PIXELS = 4096 * 4096  # larger images are refused, not resized: ask the user to shrink them
MAX_FILE_BYTES = 50 * 1024 * 1024


def open_image(source: str | os.PathLike | bytes, name: str | None = None) -> Image.Image:
    """Decode an image from a path or bytes into a fully loaded PIL image (first frame).

    EXIF orientation is applied. Raises `ImageInputError` naming the input when it is empty,
    not an image, of a format outside the allow-list, larger than the pixel cap, or truncated.
    """
    if isinstance(source, bytes | bytearray):
        label = name or "upload"
        data = bytes(source)
    else:
        label = name or os.fspath(source)
        path = Path(source)
        if not path.is_file():
            raise ImageInputError(f"{label}: not a file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageInputError(
                f"{label}: {size} bytes, over the {MAX_FILE_BYTES} byte limit", "too_large"
            )
        try:  # at most one byte over the cap: a /proc file may say 0 bytes and never end
            with path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:  # no permission, an I/O error (e.g. /proc/self/mem), a vanished file
            raise ImageInputError(f"{label}: cannot read the file ({e.strerror or e})") from None
    if not data:
        raise ImageInputError(f"{label}: empty file (0 bytes)", "empty")
    if len(data) > MAX_FILE_BYTES:
        raise ImageInputError(
            f"{label}: {len(data)} bytes, over the {MAX_FILE_BYTES} byte limit", "too_large"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageInputError(
                    f"{label}: {width}x{height} pixels is over the limit of {MAX_PIXELS} "
                    "(4096x4096); shrink the image first",
                    "too_large",
                )
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise ImageInputError(
            f"{label}: not an image cnnlab can read (use {', '.join(ALLOWED_FORMATS)})",
            "unsupported",
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageInputError(
            f"{label}: refused as a decompression bomb ({e}); "
            "cnnlab reads images up to 4096x4096 pixels",
            "too_large",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageInputError(f"{label}: broken or truncated image ({e})", "broken") from None
    return img


def flatten_alpha(img: Image.Image, background: int = 255) -> Image.Image:
    """Composite any transparency onto a plain background (white by default), as RGB."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (background,) * 3 + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB") if img.mode not in ("RGB", "L") else img


def fit_and_pad(img: Image.Image, size: tuple[int, int], fill: int | tuple = 0) -> Image.Image:
    """Resize keeping the aspect ratio so the image fits `size` (W, H), then pad to it, centred."""
    fitted = ImageOps.contain(img, size, method=Image.Resampling.LANCZOS)
    canvas = Image.new(fitted.mode, size, fill)
    canvas.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    return canvas
