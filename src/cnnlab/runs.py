"""The run folder: everything downstream (eval, predict, explain, export, web) reads only this.

    runs/NAME/
      model.safetensors   weights; metadata: model name + kwargs, dataset, classes, input shape,
                          normalisation, style, cnnlab version, SHA-256 of the tensors
      metrics.json        one entry per epoch (train/val/test loss and accuracy, seconds, images/s)
      metrics.csv         the same epochs plus a row per logged step (kind=step|epoch)
      config.json         the resolved TrainConfig
      curves.png          loss and accuracy curves
      resume.safetensors  weights + optimiser/scheduler tensors + RNG states (uint8 tensors),
                          and in its metadata the JSON rest: epoch, config, metrics so far, the
                          non-tensor optimiser/scheduler parts (one file: one atomic commit)
      resume.json         a readable copy of that JSON (the loader does not need it)
      README.md           the model card: what the model is, expects, scored, and how to load it

No pickle anywhere: weights are safetensors, everything else JSON. Every file is written
atomically (`.part`, then `os.replace`), so an interrupted write never leaves half a file, and
no loader ever reads a `.part`. Safetensors files carry SHA-256 digests of their tensors and of
their metadata: a changed byte anywhere is a CheckpointError, never a silently different model.
A run killed during epoch 1 holds its untrained epoch-0 weights (for resuming); `load_run`
refuses those with "no complete epoch yet".
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab import __version__, io
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError

if TYPE_CHECKING:  # torch is imported where weights are read or written: `cnnlab runs` needs none
    from torch import nn

WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
METRICS_CSV = "metrics.csv"
MODEL_CARD = "README.md"
CONFIG = "config.json"
CURVES = "curves.png"
RESUME_TENSORS = "resume.safetensors"
RESUME_JSON = "resume.json"
FILES = (WEIGHTS, METRICS, METRICS_CSV, CONFIG, CURVES, RESUME_TENSORS, RESUME_JSON, MODEL_CARD)

# metadata keys whose values are JSON (safetensors metadata is str -> str)
_JSON_KEYS = ("model_kwargs", "classes", "input_shape", "mean", "std")
_REQUIRED = ("model_name", "model_kwargs", "dataset", "classes", "input_shape", "mean", "std")
# Inputs a run may declare: beyond these a shared run folder could make predict or export
# allocate gigabytes per image
MAX_INPUT_SIDE = 512
MAX_CHANNELS = 4
STD_RANGE = (1e-3, 1e3)  # a forged tiny std turns every input into inf


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


def remove_stale_parts(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the `.part` files a killed process left in a run folder (loaders never read them)."""
    return io.remove_stale_parts(run_dir, FILES)


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
    meta = {
        k: v if isinstance(v, str) else json.dumps(v, default=io.json_default)
        for k, v in metadata.items()
    }
    meta.setdefault("style", "digits")
    meta["cnnlab_version"] = __version__
    meta["format"] = "cnnlab-weights-1"
    from cnnlab.tensorfile import save_tensors

    return save_tensors(Path(path), model.state_dict(), meta)


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
        raise CheckpointError(
            f"{path}: metadata {problem}; the file was not written by cnnlab or was edited: "
            "retrain or restore it"
        )
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _metadata_problem(meta: dict) -> str | None:
    """What is wrong with decoded metadata values (types, lengths), or None."""
    shape, classes = meta["input_shape"], meta["classes"]
    if not isinstance(meta["model_kwargs"], dict):
        return "'model_kwargs' is not a JSON object"
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)):
        return f"'input_shape' {str(shape)[:40]} is not three positive ints (C, H, W)"
    if shape[0] > MAX_CHANNELS or max(shape[1:]) > MAX_INPUT_SIDE:
        return (
            f"'input_shape' {shape} is over the limit of {MAX_CHANNELS} channels and "
            f"{MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} pixels"
        )
    names = isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    if not (names and len(classes) >= 2):
        return "'classes' is not a list of at least two names"
    for key in ("mean", "std"):
        values = meta[key]
        if not (isinstance(values, list) and len(values) == shape[0] and all(map(_is_number, values))):
            return f"{key!r} is not {shape[0]} finite numbers (one per channel)"
    low, high = STD_RANGE
    if not all(low <= v <= high for v in meta["std"]):
        return f"'std' has a value outside [{low:g}, {high:g}]"
    if not all(abs(v) <= high for v in meta["mean"]):
        return f"'mean' has a value outside [-{high:g}, {high:g}]"
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
        raise CheckpointError(
            f"{folder}: no complete epoch yet (training stopped before its first save); "
            f"finish it with `cnnlab train --resume {folder}`"
        )
    from cnnlab.tensorfile import load_tensors

    tensors, raw_meta = load_tensors(weights)
    meta = _decode_metadata(weights, raw_meta)
    if raw_meta.get("epochs_done") == "0":  # fit's epoch-0 save, kept only for resuming
        raise CheckpointError(
            f"{weights}: no complete epoch yet (training stopped during epoch 1); finish it with "
            f"`cnnlab train --resume {folder}`"
        )
    try:
        input_shape = tuple(int(s) for s in meta["input_shape"])
        model = get_model(meta["model_name"], input_shape, len(meta["classes"]), **meta["model_kwargs"])
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


# --- listing run folders ------------------------------------------------------------------------

RUN_STATES = ("complete", "resumable", "before-first-epoch", "broken")


@dataclass
class RunSummary:
    """One run folder as `list_runs` sees it, read cheaply (JSON files and a weights header).

    Attributes:
        name: the folder's path relative to the listed root ("." for the root itself).
        state: "complete" (all planned epochs), "resumable" (stopped after some epochs,
            resume state present), "before-first-epoch" (stopped before its first epoch
            finished; resumable from epoch 0) or "broken" (`problem` says why).
        epochs_done, epochs_planned: epochs saved and epochs in its config (None: unknown).
        val_acc, test_acc: the last epoch's, when it has them (test only at the end with a
            validation split).
        modified: the newest file's mtime (seconds since the epoch); size_bytes: on disk.
    """

    name: str
    path: Path
    state: str
    model: str | None = None
    dataset: str | None = None
    epochs_done: int = 0
    epochs_planned: int | None = None
    val_acc: float | None = None
    test_acc: float | None = None
    modified: float = 0.0
    size_bytes: int = 0
    problem: str | None = None


def _is_run_folder(folder: Path) -> bool:
    return (folder / CONFIG).is_file() or (folder / WEIGHTS).is_file()


def _weights_header(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, without reading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:  # the header only: no torch
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path}: unreadable weights header ({type(e).__name__})") from None


def weights_metadata(path: str | os.PathLike) -> dict:
    """The decoded, checked metadata of a weights file, read without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; train a run with `cnnlab train --out DIR`")
    return _decode_metadata(path, _weights_header(path))


def _read_run_files(s: RunSummary) -> None:
    """Fill `s` from config.json, metrics.json and the weights header; raise on a broken file."""
    folder = s.path
    if (folder / CONFIG).is_file():
        config = read_json(folder / CONFIG)
        if not isinstance(config, dict):
            raise CheckpointError(f"{folder / CONFIG}: not a JSON object")
        s.model, s.dataset = config.get("model"), config.get("dataset")
        s.epochs_planned = config.get("epochs") if _is_int(config.get("epochs")) else None
    if (folder / WEIGHTS).is_file():
        meta = _weights_header(folder / WEIGHTS)
        s.model = s.model or meta.get("model_name")
        s.dataset = s.dataset or meta.get("dataset")
        done = meta.get("epochs_done", "")
        s.epochs_done = int(done) if done.isdigit() else 0
    if (folder / METRICS).is_file():
        metrics = read_json(folder / METRICS)
        if not isinstance(metrics, list) or not all(isinstance(m, dict) for m in metrics):
            raise CheckpointError(f"{folder / METRICS}: not a list of epoch rows")
        s.epochs_done = len(metrics)
        last = metrics[-1] if metrics else {}
        s.val_acc = last.get("val_acc") if _is_number(last.get("val_acc")) else None
        s.test_acc = last.get("test_acc") if _is_number(last.get("test_acc")) else None


def _run_state(s: RunSummary) -> tuple[str, str | None]:
    """The state of a readable run folder, and the problem when it is broken."""
    if s.epochs_done == 0:
        return "before-first-epoch", None
    if s.epochs_planned is None or s.epochs_done >= s.epochs_planned:
        return "complete", None
    if (s.path / RESUME_TENSORS).is_file():
        return "resumable", None
    return "broken", f"stopped after {s.epochs_done} of {s.epochs_planned} epochs without a resume state"


def summarize_run(folder: str | os.PathLike, root: str | os.PathLike | None = None) -> RunSummary:
    """A `RunSummary` of one run folder (never raises for a broken folder: state says so)."""
    folder = Path(folder)
    name = Path(os.path.relpath(folder, root)).as_posix() if root is not None else folder.name
    s = RunSummary(name=name, path=folder, state="broken")
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    stats = [p.stat() for p in files]
    s.size_bytes = sum(st.st_size for st in stats)
    s.modified = max((st.st_mtime for st in stats), default=folder.stat().st_mtime)
    try:
        _read_run_files(s)
    except CheckpointError as e:
        s.problem = str(e)
        return s
    s.state, s.problem = _run_state(s)
    return s


def list_runs(root: str | os.PathLike = "runs") -> list[RunSummary]:
    """Every run folder under `root` (root itself included), sorted by name; [] when root is missing.

    A run folder is one holding config.json or model.safetensors; nothing inside one is
    searched further, hidden folders are skipped and symlinks are not followed. Nothing is
    loaded: only the JSON files and the weights header are read.
    """
    root = Path(root)
    found = []
    for here, dirs, _ in os.walk(root):
        folder = Path(here)
        if _is_run_folder(folder):
            found.append(summarize_run(folder, root))
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found, key=lambda s: s.name)
