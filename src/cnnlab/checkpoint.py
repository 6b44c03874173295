"""Resume states and the epoch save: what makes `cnnlab train --resume RUN` exact and safe.

A resume state is one safetensors file (`resume.safetensors`): the tensors of the model,
optimiser, scheduler and RNGs, and in its metadata the JSON rest (epoch, config, metrics,
the non-tensor optimiser/scheduler parts), so one atomic rename commits all of it;
`resume.json` is a readable copy. Ctrl-C is held while an epoch is saved, so the files of a
run folder always belong to the same epoch, and a failed write is one CheckpointError line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import threading
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from cnnlab import io, run_logs, runs
from cnnlab.config import RESUME_MAY_CHANGE, TrainConfig
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.metrics import smoothed_loss_floor
from cnnlab.tensorfile import load_tensors, save_tensors

# failed writes that freeing space would not fix: read-only, no permission, a file in the way
NOT_SPACE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.EISDIR)
RESUME_FORMAT = "cnnlab-resume-2"  # 2: the JSON rest lives in resume.safetensors' metadata


# --- nested state dicts <-> (JSON, flat tensors) -------------------------------------------------


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


def _is_key(v) -> bool:
    """A dict key `flatten_state` can have written (JSON scalars; lists are unhashable)."""
    return v is None or isinstance(v, str | int | float)


def _unflatten_tagged(obj: dict, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The tagged forms: a tensor reference, a non-string-keyed dict, a tuple."""
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
    if not isinstance(obj["__tuple__"], list):
        raise CheckpointError("resume state: '__tuple__' is not a list")
    return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])


def unflatten_state(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state`; a skeleton it could not have written is a CheckpointError."""
    if isinstance(obj, dict):
        if set(obj) in ({"__tensor__"}, {"__items__"}, {"__tuple__"}):
            return _unflatten_tagged(obj, tensors)
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


# --- the resume file ------------------------------------------------------------------------------


def save_resume_state(run_dir: str | os.PathLike, state: dict) -> None:
    """Write resume.safetensors (tensors + the JSON rest in its metadata), then resume.json.

    `state` holds tensors anywhere (model, optimiser, scheduler, RNG states) and must have an
    int "epoch". The safetensors file alone is the resume state, replaced in one atomic step,
    so a process killed between the two writes still leaves a complete, matching state.
    """
    folder = Path(run_dir)
    tensors: dict[str, torch.Tensor] = {}
    doc = {
        "format": RESUME_FORMAT,
        "epoch": state["epoch"],
        "state": flatten_state(state, "state", tensors),
    }
    text = json.dumps(doc, default=io.json_default)
    meta = {"epoch": str(state["epoch"]), "format": RESUME_FORMAT, "resume": text}
    save_tensors(folder / runs.RESUME_TENSORS, tensors, meta)
    io.write_json(folder / runs.RESUME_JSON, doc)


def has_resume_state(run_dir: str | os.PathLike) -> bool:
    """Whether a run folder holds a resume state (complete or not)."""
    return (Path(run_dir) / runs.RESUME_TENSORS).is_file()


def load_resume_state(run_dir: str | os.PathLike) -> dict:
    """Read resume.safetensors (written by `save_resume_state`) into the nested state dict."""
    folder = Path(run_dir)
    where = folder / runs.RESUME_TENSORS
    if not where.is_file():
        raise CheckpointError(
            f"{folder}: no {runs.RESUME_TENSORS}: not a cnnlab run folder; train one with "
            "`cnnlab train --out DIR`"
        )
    tensors, meta = load_tensors(where)
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


# --- which config a resumed run trains with ---------------------------------------------------------


def _validated(run_dir, settings: dict, what: str) -> TrainConfig:
    try:
        config = TrainConfig.from_dict(settings)
        config.validate()
    except (ConfigError, TypeError) as e:  # an edited config.json or resume state
        raise CheckpointError(f"{run_dir}: its {what} is invalid ({e}); start a new run") from None
    return config


def saved_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The config a run folder was started with: its resume state's, else its config.json.

    A folder holding only config.json was interrupted before its first save; it resumes from
    epoch 0 with that config.
    """
    folder = Path(run_dir)
    if has_resume_state(folder):
        saved = load_resume_state(folder).get("config")
        if not isinstance(saved, dict):
            raise CheckpointError(f"{folder}: its resume state has no config; start a new run")
        return _validated(folder, saved, "resume state's config")
    if (folder / runs.CONFIG).is_file():
        return _validated(folder, runs.read_json(folder / runs.CONFIG), runs.CONFIG)
    raise CheckpointError(
        f"{folder}: nothing to resume (no {runs.RESUME_TENSORS} or {runs.CONFIG}); "
        "train it with `cnnlab train --out DIR`"
    )


def resume_config(run_dir: str | os.PathLike, **overrides) -> TrainConfig:
    """The saved config of a run folder with `overrides` (None values ignored) applied."""
    saved = asdict(saved_config(run_dir))
    settings = {**saved, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        config = TrainConfig.from_dict(settings)
        config.validate()
    except TypeError as e:
        raise ConfigError(f"{run_dir}: {e}") from None
    return config


def check_resumable(saved: TrainConfig, config: TrainConfig, run_dir) -> None:
    """Refuse to resume with a setting that would make a different run."""
    for f in fields(TrainConfig):
        if f.name in RESUME_MAY_CHANGE:
            continue
        if getattr(saved, f.name) != getattr(config, f.name):
            raise ConfigError(
                f"{run_dir} was trained with {f.name}={getattr(saved, f.name)!r}, not "
                f"{getattr(config, f.name)!r}; resume with the same setting or start a new run"
            )
    if config.epochs != saved.epochs and config.schedule != "constant":
        raise ConfigError(
            f"{run_dir} uses the {config.schedule} schedule, planned for {saved.epochs} epochs; "
            f"it cannot be stretched to {config.epochs}: resume with --epochs {saved.epochs}"
        )


def resume_state(resume_from, config: TrainConfig) -> dict | None:
    """The resume state to continue (None: start afresh, also for a folder with only its config)."""
    if resume_from is None:
        return None
    check_resumable(saved_config(resume_from), config, resume_from)
    return load_resume_state(resume_from) if has_resume_state(resume_from) else None


# --- saving an epoch -------------------------------------------------------------------------------


@contextlib.contextmanager
def sigint_deferred():
    """Hold Ctrl-C while a run folder is written, so the files always match each other.

    Nested uses hold it until the outermost one ends.
    """
    if threading.current_thread() is not threading.main_thread() or getattr(
        signal.getsignal(signal.SIGINT), "holds_sigint", False
    ):
        yield
        return
    caught = []

    def hold(*_):
        caught.append(True)

    hold.holds_sigint = True
    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


@contextlib.contextmanager
def disk_errors(out_dir: Path, epoch: int):
    """A failed write (disk full, file too large, read-only) -> one CheckpointError line.

    Every file is replaced atomically, so those already in the folder are still whole.
    """
    try:
        yield
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno in NOT_SPACE:
            fix = "choose a folder you can write to with --out"
        else:
            fix = f"free some space and continue with `cnnlab train --resume {out_dir}`"
        raise CheckpointError(
            f"{out_dir}: cannot save epoch {epoch} ({reason}); the files already there are intact: {fix}"
        ) from None


def rng_state() -> dict:
    """The torch (and CUDA) RNG states, for an exact resume."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()`."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_epoch(out_dir: Path, model, optimizer, scheduler, config, metrics, meta, steps=()) -> None:
    """Weights, metrics (JSON and CSV), curves and the resume state of the epoch just finished.

    `steps` are the logged step rows (`cnnlab.run_logs`); the resume state keeps them so that a
    resumed run's metrics.csv still has every step.
    """
    state = {
        "epoch": len(metrics),
        "config": asdict(config),
        "metrics": metrics,
        "steps": list(steps),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
    }
    with sigint_deferred(), disk_errors(out_dir, len(metrics)):
        runs.save_weights(out_dir / runs.WEIGHTS, model, dict(meta, epochs_done=len(metrics)))
        io.write_json(out_dir / runs.METRICS, metrics)
        run_logs.write_metrics_csv(out_dir / run_logs.METRICS_CSV, metrics, steps)
        save_resume_state(out_dir, state)
    if metrics:
        from cnnlab.figures import training_curves  # matplotlib only once there is a curve

        with disk_errors(out_dir, len(metrics)):
            title = f"{config.model} on {config.dataset}"
            floor = smoothed_loss_floor(config.label_smoothing, len(meta["classes"]))
            training_curves(metrics, out_dir / runs.CURVES, title, steps, floor)
