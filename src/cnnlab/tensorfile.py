"""Safetensors files with SHA-256 digests of their tensors and of their metadata.

Weights (`runs`) and resume states (`checkpoint`) are both such files. A changed byte anywhere,
tensor or header, is a CheckpointError on load, never a silently different model; nothing is
ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from cnnlab import io
from cnnlab.errors import CheckpointError


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def metadata_digest(metadata: Mapping[str, str]) -> str:
    """SHA-256 over the metadata items (but this digest itself), in sorted key order."""
    items = sorted((k, v) for k, v in metadata.items() if k != "metadata_sha256")
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write tensors + metadata (str -> str) with both digests, atomically."""
    from safetensors.torch import save

    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = dict(metadata, tensors_sha256=tensors_digest(flat))
    meta["metadata_sha256"] = metadata_digest(meta)
    # Python writes the bytes: a full disk is then an OSError with its errno (safetensors' own
    # file writer reports it as an error that names none)
    return io.write_bytes(path, save(flat, metadata=meta))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file and check its digests; every failure is a CheckpointError."""
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"{path}: not found; train a model with `cnnlab train --out DIR`")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except Exception as e:  # SafetensorError, OSError, ValueError: all mean "not a valid file"
        raise CheckpointError(
            f"{path}: not a valid safetensors file ({type(e).__name__}: {e}); "
            "it is truncated or corrupted: retrain or restore it"
        ) from None
    expected = metadata.get("tensors_sha256")
    if expected is None:
        raise CheckpointError(f"{path}: no tensors_sha256 in its metadata; not written by cnnlab")
    if tensors_digest(tensors) != expected:
        raise CheckpointError(
            f"{path}: its tensors do not match the SHA-256 in its metadata: the file was "
            "changed or corrupted after it was written; retrain or restore it"
        )
    if metadata.get("metadata_sha256") != metadata_digest(metadata):
        raise CheckpointError(
            f"{path}: its metadata does not match the SHA-256 written with it: the header was "
            "edited or corrupted after it was written; retrain or restore it"
        )
    return tensors, metadata
