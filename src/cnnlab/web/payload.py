"""Requests in, JSON out: the image bytes a request carries, and PNG data URLs for answers.

An image can come three ways: a multipart upload in the field `file` (an HTML form, `curl -F
file=@digit.png`), JSON `{"image": "<base64 PNG or data: URL>"}` (the page's canvas), or the
bare bytes with an `image/*` type. The declared types only pick how to unpack the body; what
the bytes are is decided by decoding them (`cnnlab.data.images.open_image`), later.
"""

from __future__ import annotations

import base64
import binascii
import io
import json

import numpy as np
import torch
from fastapi import HTTPException, Request
from PIL import Image

from cnnlab.errors import ImageInputError

ACCEPTED = (
    'multipart/form-data with the image in the field \'file\', JSON {"image": "<base64 PNG or '
    "data URL>\"}, or the image's bytes with Content-Type image/*"
)

# The request body's OpenAPI description (the endpoints read the body themselves, so that the
# size limit, the field names and the error messages are ours).
REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {
                        "type": "string",
                        "description": "base64 PNG/JPEG/..., or a data URL (data:image/png;base64,...)",
                    }
                },
            }
        },
        "image/png": {"schema": {"type": "string", "format": "binary"}},
    },
}


async def read_image_bytes(request: Request) -> tuple[bytes, str]:
    """The image bytes of a request and a name for messages.

    Raises:
        HTTPException: 415 for a body type not accepted, 400 for an unreadable body, 422 for
            a body without an image in it.
        ImageInputError: an empty image ("empty").
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        data, name = await _from_multipart(request)
    elif ctype == "application/json" or ctype.endswith("+json"):
        data, name = _from_json(await request.body())
    elif ctype.startswith("image/") or ctype == "application/octet-stream":
        data, name = await request.body(), "body"
    elif not ctype and not await request.body():
        raise ImageInputError(f"empty request body: send {ACCEPTED}", "empty")
    else:
        raise HTTPException(415, f"Content-Type {ctype or '(none)'!r} not accepted: send {ACCEPTED}")
    if not data:
        raise ImageInputError(f"{name}: empty image (0 bytes)", "empty")
    return data, name


async def _from_multipart(request: Request) -> tuple[bytes, str]:
    # `async with` closes the uploads' spooled temporary files when done
    async with request.form(max_files=1, max_fields=10) as form:
        item = form.get("file")
        if item is None:
            raise HTTPException(
                422,
                f"multipart body has no field 'file' (fields: {sorted(form.keys()) or 'none'}); "
                "send the image as file=@digit.png",
            )
        if isinstance(item, str):
            raise HTTPException(422, "the field 'file' is text, not a file upload: send file=@digit.png")
        return await item.read(), item.filename or "file"


def _from_json(body: bytes) -> tuple[bytes, str]:
    if not body:
        raise ImageInputError(f"empty request body: send {ACCEPTED}", "empty")
    try:
        doc = json.loads(body)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit number
        raise HTTPException(400, f'body is not valid JSON ({e}); send {{"image": "<base64>"}}') from None
    except RecursionError:  # [[[[... deeper than the parser's recursion limit
        raise HTTPException(400, 'body is JSON nested too deeply; send {"image": "<base64>"}') from None
    if not isinstance(doc, dict) or not isinstance(doc.get("image"), str):
        raise HTTPException(422, "JSON body needs a string field 'image': base64 bytes or a data URL")
    return decode_base64_image(doc["image"]), "image"


def decode_base64_image(text: str) -> bytes:
    """Bytes from base64 or a `data:[type][;base64],DATA` URL (the declared type is ignored)."""
    text = text.strip()
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise HTTPException(400, "image: a data URL must be base64 (data:image/png;base64,...)")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise HTTPException(400, f"image: not valid base64 ({e})") from None


def png_data_url(image: Image.Image | np.ndarray) -> str:
    """A PIL image or uint8 array (H, W) / (H, W, 3) as a `data:image/png;base64,` URL."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def input_data_url(x: torch.Tensor) -> str:
    """The model's uint8 (C, H, W) input as a PNG data URL (grey for C=1, RGB for C=3)."""
    arr = x.permute(1, 2, 0).numpy()  # (H, W, C)
    return png_data_url(arr[:, :, 0] if arr.shape[2] == 1 else arr)


WHITE_QUANTILE = 0.995  # the activation drawn white (see feature_map_urls)
WHITE_SAMPLE = 1 << 20


def feature_map_urls(maps: torch.Tensor) -> tuple[list[str], tuple[float, float]]:
    """One layer's (channels, h, w) activations as grey PNG data URLs on one shared scale.

    One scale for the whole layer (not one per map) so that a map that barely responds looks
    dark instead of being stretched into noise. White is the layer's 99.5th percentile, not its
    maximum: a few very bright pixels would otherwise leave every other map nearly black.

    Returns:
        (data URLs, (the activations shown black and white; brighter ones are clipped)).
    """
    flat = maps.detach().float().flatten()
    flat = flat[:: max(1, flat.numel() // WHITE_SAMPLE)]  # torch.quantile takes at most 2^24 values
    lo, hi = float(flat.min()), float(torch.quantile(flat, WHITE_QUANTILE))
    scaled = (maps - lo) / (hi - lo) if hi > lo else torch.zeros_like(maps)
    grey = (scaled * 255).round().clamp(0, 255).to(torch.uint8).numpy()  # (C, h, w)
    return [png_data_url(m) for m in grey], (lo, hi)


def prediction_json(pred, classes: tuple[str, ...], top: int) -> dict:
    """A `predict.Prediction` (made with every class in `top`) as the API's JSON."""
    probabilities = dict(pred.top)
    pre = pred.preprocessed
    return {
        "label": pred.label,
        "probability": pred.probability,
        "top": [{"class": c, "probability": p} for c, p in pred.top[:top]],
        "probabilities": {c: probabilities[c] for c in classes},
        "input": input_data_url(pred.input),
        "inverted": bool(pre.inverted) if pre else False,
        "thickened": int(pre.thickened) if pre else 0,
    }
