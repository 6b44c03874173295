"""Safe decoding of user image files: the one place Pillow reads bytes we did not make.

Formats are checked by content (Pillow's sniffing), not by file name; only an allow-list is
accepted; a pixel cap refuses huge images and decompression bombs before they are decoded. The
web app passes a lower cap (`WEB_MAX_PIXELS`): a JPEG over it is decoded at a reduced scale
(JPEG's DCT scaling, `Image.draft`), any other format over it is refused from its header.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import ImageInputError

ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
MAX_PIXELS = 4096 * 4096  # larger images are refused, not resized: ask the user to shrink them
WEB_MAX_PIXELS = 2048 * 2048  # per web request: bounds a request's memory, a drawn digit is 280x280
MAX_FILE_BYTES = 50 * 1024 * 1024


def _read_source(source: str | os.PathLike | bytes, name: str | None) -> tuple[str, bytes]:
    """(the label for messages, at most MAX_FILE_BYTES + 1 bytes of the file or the bytes)."""
    if isinstance(source, bytes | bytearray):
        return name or "upload", bytes(source)
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
            return label, f.read(MAX_FILE_BYTES + 1)
    except OSError as e:  # no permission, an I/O error (e.g. /proc/self/mem), a vanished file
        raise ImageInputError(f"{label}: cannot read the file ({e.strerror or e})") from None


def open_image(
    source: str | os.PathLike | bytes, name: str | None = None, *, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Decode an image from a path or bytes into a fully loaded PIL image (first frame).

    EXIF orientation is applied. Raises `ImageInputError` naming the input when it is empty,
    not an image, of a format outside the allow-list, larger than the pixel cap, or truncated.

    Args:
        source: a path or the file's bytes.
        name: a label for error messages (default: the path, or "upload").
        max_pixels: the pixel cap. A JPEG over it is decoded at 1/2, 1/4 or 1/8 scale to fit
            under it (when that suffices); any other image over it is refused.
    """
    label, data = _read_source(source, name)
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
            _fit_pixel_cap(img, label, max_pixels)
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
            f"cnnlab reads images up to {_cap_text(max_pixels)} pixels",
            "too_large",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageInputError(f"{label}: broken or truncated image ({e})", "broken") from None
    return img


def _cap_text(max_pixels: int) -> str:
    """A pixel cap as "WxW" when it is a square, else as a count."""
    side = math.isqrt(max_pixels)
    return f"{side}x{side}" if side * side == max_pixels else f"{max_pixels}"


def _fit_pixel_cap(img: Image.Image, label: str, max_pixels: int) -> None:
    """Ask a JPEG over the cap to decode at a reduced scale; refuse what stays over it."""
    width, height = img.size
    if width * height > max_pixels and img.format == "JPEG":
        scale = next((s for s in (2, 4, 8) if -(-width // s) * -(-height // s) <= max_pixels), None)
        if scale and min(width, height) >= scale:
            img.draft(img.mode, (width // scale, height // scale))
    if img.size[0] * img.size[1] > max_pixels:
        raise ImageInputError(
            f"{label}: {width}x{height} pixels is over the limit of {max_pixels} "
            f"({_cap_text(max_pixels)}); shrink the image first",
            "too_large",
        )


def flatten_alpha(img: Image.Image, background: int = 255) -> Image.Image:
    """Composite any transparency onto a plain background (white by default), as RGB."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        if rgba.getextrema()[3][0] == 255:  # fully opaque: compositing would change no pixel
            return rgba.convert("RGB")
        canvas = Image.new("RGBA", rgba.size, (background,) * 3 + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB") if img.mode not in ("RGB", "L") else img


def fit_and_pad(img: Image.Image, size: tuple[int, int], fill: int | tuple = 0) -> Image.Image:
    """Resize keeping the aspect ratio so the image fits `size` (W, H), then pad to it, centred."""
    fitted = ImageOps.contain(img, size, method=Image.Resampling.LANCZOS)
    canvas = Image.new(fitted.mode, size, fill)
    canvas.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    return canvas
