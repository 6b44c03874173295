"""A job request from the Train page, checked as `cnnlab train` checks its flags, and the
command line that runs it.

The request is a JSON object of TrainConfig's field names plus `recipe` and `name` (the run
folder under the server's runs folder), or `{"resume": NAME}` (with `epochs` optionally).
Every bad field is a ConfigError (400) whose message names it. Run names are one path
component; image-folder datasets must lie under the server's `--data-dir`; `data_root` is
the server's own.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import fields
from pathlib import Path

from cnnlab.errors import ConfigError

NAME_RE = re.compile(r"^(?!\.)[A-Za-z0-9._-]{1,64}$")
SERVER_FIELDS = ("data_root",)  # the server decides these, not the page
RESUME_FIELDS = ("resume", "epochs")


def check_run_name(name: object, key: str = "name") -> str:
    """A run name that is a single safe path component; else ConfigError naming `key`."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"{key}: a run name is 1..64 letters, digits and '._-', not starting with '.', "
            f"not {str(name)[:40]!r}"
        )
    return name


def _dataset(value: object, data_dir: Path | None) -> str:
    """A registered dataset name, or an image folder under data_dir (as an absolute path)."""
    from cnnlab.data.datasets import DATASETS, IMAGEFOLDER_PREFIX

    if isinstance(value, str) and value in DATASETS:
        return value
    if not isinstance(value, str) or not value.startswith(IMAGEFOLDER_PREFIX):
        raise ConfigError(
            f"dataset: choose {', '.join(DATASETS)} or imagefolder:NAME, not {str(value)[:40]!r}"
        )
    if data_dir is None:
        raise ConfigError("dataset: image folders need the server started with --data-dir DIR")
    base = Path(data_dir).resolve()
    folder = (base / value[len(IMAGEFOLDER_PREFIX) :]).resolve()
    if not folder.is_relative_to(base) or folder == base or not folder.is_dir():
        raise ConfigError(f"dataset: {value[:60]!r} is not a folder under the server's --data-dir")
    return IMAGEFOLDER_PREFIX + str(folder)


def check_fields(body: dict, data_dir: Path | None) -> tuple[str | None, dict]:
    """The recipe and TrainConfig overrides of a new job, each checked; ConfigError names the field."""
    from cnnlab.config import RECIPES, TrainConfig, make_config

    names = {f.name for f in fields(TrainConfig)}
    for key in body:
        if key in SERVER_FIELDS:
            raise ConfigError(f"{key}: set by the server, not by a job")
        if key not in names and key not in ("recipe", "name"):
            raise ConfigError(f"{str(key)[:40]}: not a setting of cnnlab train")
    recipe = body.get("recipe")
    if recipe is not None and recipe not in RECIPES:
        raise ConfigError(f"recipe: choose one of {', '.join(RECIPES)}, not {str(recipe)[:40]!r}")
    overrides = {k: v for k, v in body.items() if k in names and v is not None}
    if "dataset" in overrides:
        overrides["dataset"] = _dataset(overrides["dataset"], data_dir)
    for key, value in overrides.items():  # one at a time, so that the error names its field
        try:
            make_config(recipe, **{key: value})
        except (ConfigError, TypeError) as e:
            raise ConfigError(str(e) if key in str(e) else f"{key}: {e}") from None
    try:
        make_config(recipe, **overrides)
    except TypeError as e:
        raise ConfigError(str(e)) from None
    return recipe, overrides


def flag_args(overrides: dict) -> list[str]:
    """`cnnlab train` flags for TrainConfig overrides (the same names the CLI takes)."""
    from cnnlab.config import TrainConfig, flag_name

    out: list[str] = []
    for f in fields(TrainConfig):
        if f.name not in overrides:
            continue
        value, flag = overrides[f.name], flag_name(f)
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, dict):
            out += [flag, json.dumps(value)]
        elif isinstance(value, list | tuple):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


def _launcher(nproc: int | None) -> list[str]:
    """`python -m cnnlab`, or torchrun with nproc processes."""
    if nproc:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "cnnlab",
        ]
    return [sys.executable, "-m", "cnnlab"]


def _resume_argv(body: dict, runs_dir: Path) -> tuple[str, list[str]]:
    """The run and flags of `{"resume": NAME, "epochs": N}`."""
    from cnnlab.checkpoint import resume_config

    extra = set(body) - set(RESUME_FIELDS)
    if extra:
        raise ConfigError(
            f"{sorted(extra)[0][:40]}: a resumed run keeps its settings (only epochs may change)"
        )
    name = check_run_name(body["resume"], "resume")
    folder = runs_dir / name
    if not (folder / "config.json").is_file():
        raise ConfigError(f"resume: no run {name!r} to resume under the runs folder")
    epochs = body.get("epochs")
    try:
        resume_config(folder, epochs=epochs)
    except TypeError as e:
        raise ConfigError(f"epochs: {e}") from None
    return name, [
        "train",
        "--resume",
        str(folder),
        *(["--epochs", str(epochs)] if epochs is not None else []),
    ]


def job_argv(body: object, runs_dir: Path, settings, taken: set[str]) -> tuple[str, list[str]]:
    """The run name and the child's full command line for a job request.

    Raises:
        ConfigError: a bad field, named in the message.
    """
    if not isinstance(body, dict):
        raise ConfigError('a job is a JSON object of cnnlab train\'s settings, e.g. {"recipe": "fast"}')
    if "resume" in body:
        name, args = _resume_argv(body, runs_dir)
    else:
        recipe, overrides = check_fields(body, settings.data_dir)
        model = overrides.get("model") or (recipe or "run")
        name = check_run_name(body.get("name") or f"{model}-{time.strftime('%Y%m%d-%H%M%S')}")
        if (runs_dir / name).exists():
            raise ConfigError(
                f"name: the runs folder already holds {name!r}; choose another name or resume it"
            )
        args = ["train", *(["--recipe", recipe] if recipe else []), *flag_args(overrides)]
        args += ["--out", str(runs_dir / name)]
    if name in taken:
        raise ConfigError(f"name: a job for run {name!r} is already queued or running")
    if settings.data_root is not None:
        args += ["--root", str(settings.data_root)]
    return name, [*_launcher(settings.nproc), *args, "--quiet"]
