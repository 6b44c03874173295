"""The run folder: everything downstream (eval, predict, explain, export, web) reads only this.

    runs/NAME/
      model.safetensors   weights; metadata: model name + kwargs, dataset, classes, input shape,
                          normalisation, style, cnnlab version, SHA-256 of the tensors
      metrics.json        one entry per epoch (train/test loss and accuracy, seconds, images/s)
      config.json         the resolved TrainConfig
      curves.png          loss and accuracy curves
      resume.safetensors  weights + optimiser/scheduler tensors + RNG states (uint8 tensors),
                          and in its metadata the JSON rest: epoch, config, metrics so far, the
                          non-tensor optimiser/scheduler parts (one file: one atomic commit)
      resume.json         a readable copy of that JSON (the loader does not need it)

No pickle anywhere: weights are safetensors, everything else JSON. Every file is written
atomically (`.part`, then `os.replace`), so an interrupted write never leaves half a file, and
no loader ever reads a `.part`. Safetensors files carry SHA-256 digests of their tensors and of
their metadata: a changed byte anywhere is a CheckpointError, never a silently different model.
A run killed during epoch 1 holds its untrained epoch-0 weights (for resuming); `load_run`
refuses those with "no complete epoch yet".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab import __version__
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError

WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
CONFIG = "config.json"
CURVES = "curves.png"
RESUME_TENSORS = "resume.safetensors"
RESUME_JSON = "resume.json"
RESUME_FORMAT = "cnnlab-resume-2"  # 2: the JSON rest lives in resume.safetensors' metadata

# metadata keys whose values are JSON (safetensors metadata is str -> str)
_JSON_KEYS = ("model_kwargs", "classes", "input_shape", "mean", "std")
_REQUIRED = ("model_name", "model_kwargs", "dataset", "classes", "input_shape", "mean", "std")


@dataclass
class Run:
    """A loaded run folder: the model ready to predict (eval mode, CPU) and what describes it."""

    path: Path
    model: nn.Module
    model_name: str
    model_kwargs: dict
    dataset: str
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    style: str  # "digits" | "fit": how preprocess turns a user's image into an input
    metrics: list | None = None
    config: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --- atomic files ---------------------------------------------------------------------------


def _atomic(path: Path, write) -> Path:
    """Call write(part_path), then rename the part over path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        write(part)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


def remove_stale_parts(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the `.part` files a killed process left in a run folder (loaders never read them)."""
    folder = Path(run_dir)
    names = (WEIGHTS, METRICS, CONFIG, CURVES, RESUME_TENSORS, RESUME_JSON)
    stale = [folder / f"{name}.part" for name in names if (folder / f"{name}.part").is_file()]
    for part in stale:
        part.unlink(missing_ok=True)
    return stale


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write obj as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    return _atomic(Path(path), lambda p: p.write_text(text))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file (report.md, ...) atomically."""
    return _atomic(Path(path), lambda p: p.write_text(text))


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file of a run folder; a broken one is a CheckpointError."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: bad JSON, 5000-digit ints
        raise CheckpointError(f"{path}: unreadable JSON ({e}); delete it or retrain") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply; delete it or retrain") from None


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    from safetensors.torch import save

    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = dict(metadata, tensors_sha256=tensors_digest(flat))
    meta["metadata_sha256"] = metadata_digest(meta)
    data = save(flat, metadata=meta)
    # Python writes the bytes: a full disk is an OSError (safetensors' own file writer reports
    # it as a SafetensorError that names no errno)
    return _atomic(path, lambda p: p.write_bytes(data))


def metadata_digest(metadata: Mapping[str, str]) -> str:
    """SHA-256 over the metadata items (but this digest itself), in sorted key order."""
    items = sorted((k, v) for k, v in metadata.items() if k != "metadata_sha256")
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def _load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file and check its digest; every failure is a CheckpointError."""
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


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --- weights --------------------------------------------------------------------------------


def save_weights(path: str | os.PathLike, model: nn.Module, metadata: dict) -> Path:
    """Write the model's state dict as safetensors with self-describing metadata.

    Args:
        path: the .safetensors file (usually `RUN/model.safetensors`).
        model: the trained model.
        metadata: at least model_name, model_kwargs, dataset, classes, input_shape, mean, std
            (and style); values that are not strings are stored as JSON.
    """
    missing = [k for k in _REQUIRED if k not in metadata]
    if missing:
        raise ConfigError(f"save_weights: metadata lacks {', '.join(missing)}")
    meta = {k: v if isinstance(v, str) else json.dumps(v, default=_json_default)
            for k, v in metadata.items()}  # fmt: skip
    meta.setdefault("style", "digits")
    meta["cnnlab_version"] = __version__
    meta["format"] = "cnnlab-weights-1"
    return _save_tensors(Path(path), model.state_dict(), meta)


def run_metadata(model_name: str, model_kwargs: dict, info, extra: dict | None = None) -> dict:
    """The metadata `save_weights` needs, from a model and a DatasetInfo."""
    meta = {
        "model_name": model_name,
        "model_kwargs": model_kwargs,
        "dataset": info.name,
        "classes": list(info.classes),
        "input_shape": list(info.image_shape),
        "mean": list(info.mean),
        "std": list(info.std),
        "style": info.style,
    }
    meta.update(extra or {})
    return meta


def _decode_metadata(path: Path, meta: dict[str, str]) -> dict:
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: metadata lacks {', '.join(missing)}; not a cnnlab weights file")
    out: dict[str, Any] = dict(meta)
    for key in _JSON_KEYS:
        try:
            out[key] = json.loads(meta[key])
        except (ValueError, RecursionError):
            raise CheckpointError(f"{path}: metadata {key!r} is not valid JSON") from None
    problem = _metadata_problem(out)
    if problem:
        raise CheckpointError(f"{path}: metadata {problem}; the file was not written by cnnlab "
                              "or was edited: retrain or restore it")  # fmt: skip
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_key(v) -> bool:
    """A dict key `flatten_state` can have written (JSON scalars; lists are unhashable)."""
    return v is None or isinstance(v, str | int | float)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _metadata_problem(meta: dict) -> str | None:
    """What is wrong with decoded metadata values (types, lengths), or None."""
    shape, classes = meta["input_shape"], meta["classes"]
    if not isinstance(meta["model_kwargs"], dict):
        return "'model_kwargs' is not a JSON object"
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)):
        return f"'input_shape' {str(shape)[:40]} is not three positive ints (C, H, W)"
    names = isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    if not (names and len(classes) >= 2):
        return "'classes' is not a list of at least two names"
    for key in ("mean", "std"):
        values = meta[key]
        if not (isinstance(values, list) and len(values) == shape[0] and all(map(_is_number, values))):
            return f"{key!r} is not {shape[0]} finite numbers (one per channel)"
    if min(meta["std"]) <= 0:
        return "'std' has a value <= 0"
    return None


def load_run(run_dir: str | os.PathLike) -> Run:
    """Load a run folder (or a model.safetensors path): the model in eval mode on the CPU.

    Raises:
        CheckpointError: the folder or weights are missing, truncated, tampered with, name an
            unknown model, or do not fit the model they name.
    """
    from cnnlab.models import get_model

    path = Path(run_dir)
    weights = path if path.suffix == ".safetensors" else path / WEIGHTS
    folder = weights.parent
    if not folder.exists():
        raise CheckpointError(f"{folder}: no such run folder; train one with `cnnlab train --out`")
    if not weights.exists() and (folder / CONFIG).is_file():
        raise CheckpointError(f"{folder}: no complete epoch yet (training stopped before its "
                              "first save); train it again")  # fmt: skip
    tensors, raw_meta = _load_tensors(weights)
    meta = _decode_metadata(weights, raw_meta)
    if raw_meta.get("epochs_done") == "0":  # fit's epoch-0 save, kept only for resuming
        raise CheckpointError(
            f"{weights}: no complete epoch yet (training stopped during epoch 1); finish it with "
            f"`cnnlab train --resume {folder}`"
        )
    try:
        input_shape = tuple(int(s) for s in meta["input_shape"])
        model = get_model(meta["model_name"], input_shape, len(meta["classes"]),
                          **meta["model_kwargs"])  # fmt: skip
    except (CnnlabError, TypeError, ValueError) as e:  # ShapeError too: input too small
        raise CheckpointError(f"{weights}: cannot rebuild its model ({e})") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(
            f"{weights}: weights do not fit model {meta['model_name']!r} ({' '.join(first[:3])[:300]})"
        ) from None
    model.eval()
    metrics = read_json(folder / METRICS) if (folder / METRICS).is_file() else None
    config = read_json(folder / CONFIG) if (folder / CONFIG).is_file() else None
    return Run(
        path=folder,
        model=model,
        model_name=meta["model_name"],
        model_kwargs=dict(meta["model_kwargs"]),
        dataset=meta["dataset"],
        classes=tuple(str(c) for c in meta["classes"]),
        input_shape=input_shape,  # type: ignore[arg-type]
        mean=tuple(float(m) for m in meta["mean"]),
        std=tuple(float(s) for s in meta["std"]),
        style=meta.get("style", "digits"),
        metrics=metrics,
        config=config,
    )


# --- resume state: nested state dicts <-> (JSON, flat tensors) --------------------------------


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested state dict by a reference; collect tensors by name.

    Dicts with non-string keys (optimiser state is keyed by parameter index) and tuples are
    tagged so that `unflatten_state` gives back exactly the same structure.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj):
            return {k: flatten_state(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise CheckpointError(f"cannot store {type(obj).__name__} at {prefix} in a resume state")


def unflatten_state(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state`; a skeleton it could not have written is a CheckpointError."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            name = obj["__tensor__"]
            if not isinstance(name, str) or name not in tensors:
                raise CheckpointError(f"resume state lacks tensor {str(name)[:60]!r}")
            return tensors[name]
        if set(obj) == {"__items__"}:
            items = obj["__items__"]
            if not isinstance(items, list) or not all(
                isinstance(kv, list) and len(kv) == 2 and _is_key(kv[0]) for kv in items
            ):
                raise CheckpointError("resume state: '__items__' is not a list of [key, value] pairs")
            return {k: unflatten_state(v, tensors) for k, v in items}
        if set(obj) == {"__tuple__"}:
            if not isinstance(obj["__tuple__"], list):
                raise CheckpointError("resume state: '__tuple__' is not a list")
            return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def save_resume_state(run_dir: str | os.PathLike, state: dict) -> None:
    """Write resume.safetensors (tensors + the JSON rest in its metadata), then resume.json.

    `state` holds tensors anywhere (model, optimiser, scheduler, RNG states) and must have an
    int "epoch". The safetensors file alone is the resume state, replaced in one atomic step,
    so a process killed between the two writes still leaves a complete, matching state;
    resume.json is a copy for people to read.
    """
    folder = Path(run_dir)
    tensors: dict[str, torch.Tensor] = {}
    doc = {"format": RESUME_FORMAT, "epoch": state["epoch"],
           "state": flatten_state(state, "state", tensors)}  # fmt: skip
    text = json.dumps(doc, default=_json_default)
    meta = {"epoch": str(state["epoch"]), "format": RESUME_FORMAT, "resume": text}
    _save_tensors(folder / RESUME_TENSORS, tensors, meta)
    write_json(folder / RESUME_JSON, doc)


def load_resume_state(run_dir: str | os.PathLike) -> dict:
    """Read resume.safetensors (written by `save_resume_state`) into the nested state dict."""
    folder = Path(run_dir)
    if not (folder / RESUME_TENSORS).is_file():
        raise CheckpointError(
            f"{folder}: no {RESUME_TENSORS}: not a cnnlab run folder, or training stopped "
            "before its first save; start it again"
        )
    tensors, meta = _load_tensors(folder / RESUME_TENSORS)
    where = folder / RESUME_TENSORS
    try:
        doc = json.loads(meta["resume"])
    except KeyError:
        raise CheckpointError(f"{where}: no resume state in its metadata; start a new run") from None
    except (ValueError, RecursionError):
        raise CheckpointError(f"{where}: its resume state is not valid JSON; start a new run") from None
    if not isinstance(doc, dict) or "state" not in doc or str(doc.get("epoch")) != meta.get("epoch"):
        raise CheckpointError(f"{where}: its resume state is inconsistent; start a new run")
    try:
        return unflatten_state(doc["state"], tensors)
    except CheckpointError as e:
        raise CheckpointError(f"{where}: {e}; start a new run") from None
    except RecursionError:
        raise CheckpointError(f"{where}: its resume state nests too deeply; start a new run") from None
