"""Command-line flags generated from TrainConfig's fields: one schema for train, compare, bench.

Each field becomes a kebab-case flag (`batch_size` -> `--batch-size`) whose help and choices
come from the field's metadata and whose "(default: ...)" is the field's default. Every flag
defaults to None, meaning "not given": the recipe's value (with `--recipe`), else TrainConfig's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import fields

from cnnlab.config import RECIPES, TrainConfig, default_value, field_type, flag_name

# What a reader of --help wants to know before choosing (measured: README "Speed", BENCHMARKS.md)
RECIPE_NOTES = {
    "lesson-mlp": "2 epochs",
    "lesson-cnn": "5 epochs",
    "fast": "1 epoch, ~99.1 %: under a second on 2 Zen 5 cores, ~4 s on 2 Zen 3 (AVX2) cores",
    "quick": "4 epochs, ~99.5 %: ~7 s on 2 Zen 5 cores (bf16 where the CPU has it)",
    "best": "20 epochs, ~99.76 %: ~7 min with AVX512-BF16, ~70 min in float32 on AVX2",
    "reference": "the published GPU speed recipe, a benchmark baseline",
}


def json_object(text: str) -> dict:
    """--model-kwargs: a JSON object; anything else is argparse's usage error, not a traceback."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({type(e).__name__})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, like '{\"hidden\": [128]}'")
    return value


def _escape(help_text: str) -> str:
    """argparse formats help with %: a literal percent sign is %%."""
    return help_text.replace("%", "%%")


def _default_text(f) -> str:
    value = default_value(f)
    if value is None:
        return ""  # the help says what None means
    if isinstance(value, bool):
        value = "on" if value else "off"
    elif isinstance(value, tuple):
        value = " ".join(map(str, value))
    elif isinstance(value, dict):
        value = json.dumps(value)
    return f" (default: {value})"


def _flag_options(f, as_text: bool) -> dict:
    """argparse keyword arguments for one field."""
    kind, _ = field_type(f)
    options = {"dest": f.name, "default": None, "help": _escape(f.metadata["help"] + _default_text(f))}
    if as_text:
        options["metavar"] = "N|NAME=N,..."
    elif kind is bool:
        options["action"] = argparse.BooleanOptionalAction
    elif kind is dict:
        options["type"] = json_object
    elif kind is tuple:
        options.update(type=float, nargs=2)
    else:
        options["type"] = kind
    for key in ("choices", "metavar"):
        if key in f.metadata and not as_text:
            options[key] = f.metadata[key]
    return options


def add_config_options(
    parser: argparse.ArgumentParser, exclude: Iterable[str] = (), as_text: Iterable[str] = ()
) -> None:
    """Add `--recipe` and one flag per TrainConfig field.

    Args:
        parser: the subcommand's parser.
        exclude: fields that get no flag (e.g. `model` where models are positional).
        as_text: fields read as text for the command to parse (compare's `--epochs mlp=2,cnn=3`).
    """
    recipes = ", ".join(
        f"{name} ({RECIPE_NOTES[name]})" if name in RECIPE_NOTES else name for name in RECIPES
    )
    parser.add_argument(
        "--recipe", help=_escape(f"named settings that flags override: {recipes} (default: none)")
    )
    skip, text = set(exclude), set(as_text)
    for f in fields(TrainConfig):
        if f.name not in skip:
            parser.add_argument(flag_name(f), **_flag_options(f, f.name in text))


def config_overrides(args: argparse.Namespace) -> dict:
    """The TrainConfig settings given on the command line (unset flags left out)."""
    names = [f.name for f in fields(TrainConfig)]
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
