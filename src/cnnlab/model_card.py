"""The model card: `RUN/README.md`, what a run's model is, expects, scored and how to use it.

Written by fit after the last epoch and rebuilt from the run folder alone (the weights header,
config.json, metrics.json and, once `cnnlab eval` has run, eval.json), so it can be refreshed
at any time with `write_model_card(RUN)`. The model is rebuilt without its weights only to
count its parameters and multiply-accumulates.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import fields
from pathlib import Path

from cnnlab import __version__, io, runs
from cnnlab.config import TrainConfig, default_value

EVAL_JSON = "eval.json"  # cnnlab.evaluation.EVAL_JSON (that module needs torch data loading)
STYLE_TEXT = {
    "digits": "centred by mass like MNIST: the ink's box fitted into 20x20, pasted into 28x28 with "
    "its centre of mass at the centre; white ink on black (a dark-on-light photo is inverted)",
    "fit": "fitted into the input size keeping the aspect ratio and padded, no centring "
    "(exactly the training transform for an image folder)",
}


def train_command(config: dict, out: str | os.PathLike) -> str:
    """The `cnnlab train` command that trains this config again (flags for non-defaults)."""
    words = ["cnnlab", "train"]
    for f in fields(TrainConfig):
        value = config.get(f.name, default_value(f))
        default = default_value(f)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if value == default or value is None:
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple | list):
            words += [flag, *map(str, value)]
        elif isinstance(value, dict):
            words += [flag, json.dumps(value)]
        else:
            words += [flag, str(value)]
    words += ["--out", os.fspath(out)]
    return shlex.join(words)


def _size(meta: dict) -> tuple[str, str]:
    """(parameters, MACs per image) of the model the metadata names, as text."""
    from cnnlab.models import count_macs, count_parameters, get_model

    try:
        shape = tuple(meta["input_shape"])
        model = get_model(meta["model_name"], shape, len(meta["classes"]), **meta["model_kwargs"])
        return f"{count_parameters(model):,}", f"{count_macs(model, shape):,}"
    except Exception:  # a card is documentation: an unbuildable model must not stop training
        return "unknown", "unknown"


def _scores(metrics: list[dict], config: dict) -> list[str]:
    """The accuracy lines, saying which split is which."""
    last = metrics[-1] if metrics else {}
    lines = ["| split | accuracy | loss |", "|---|---|---|"]
    for key, name in (("val", "validation (held out of the training set)"), ("test", "test")):
        if f"{key}_acc" in last:
            lines.append(f"| {name} | {100 * last[f'{key}_acc']:.2f}% | {last[f'{key}_loss']:.4f} |")
    if config.get("val_split"):
        lines.append(
            "\nSettings were chosen on the validation split; the test set was evaluated once, "
            "after the last epoch, so the test accuracy is an honest estimate."
        )
    else:
        lines.append(
            "\nNo validation split: the test set was evaluated after every epoch. If settings were "
            "tuned on it, the test accuracy is optimistic; train with `--val-split 0.1` to avoid that."
        )
    if last.get("tta"):
        once = last.get("test_acc_one_pass")
        lines.append(
            f"The final figures average {last['tta']} one-pixel shifts (test-time augmentation)"
            + (
                f"; `cnnlab predict`, the web app and exported models read each image once, which "
                f"reads {100 * once:.2f}% of the test set."
                if isinstance(once, float)
                else "."
            )
        )
    return lines


def _per_class(folder: Path) -> list[str]:
    """Per-class precision/recall/F1 from eval.json, when `cnnlab eval` has written one."""
    path = folder / EVAL_JSON
    if not path.is_file():
        return [f"Run `cnnlab eval {folder}` for per-class scores (they then appear here)."]
    report = runs.read_json(path)
    lines = [
        f"On the {report.get('split', 'test')} split ({report.get('images', '?')} images, "
        f"from `cnnlab eval`):",
        "",
        "| class | precision | recall | F1 | images |",
        "|---|---|---|---|---|",
    ]
    for s in report.get("per_class", []):
        scores = " | ".join(f"{s[k]:.3f}" for k in ("precision", "recall", "f1"))
        lines.append(f"| {s['class']} | {scores} | {s['support']} |")
    return lines


def _model_sections(folder: Path, meta: dict) -> list[str]:
    """What the model is and the input it expects."""
    params, macs = _size(meta)
    c, h, w = meta["input_shape"]
    name, dataset, style = meta["model_name"], meta["dataset"], meta.get("style", "digits")
    return [
        f"# {folder.name}: {name} on {dataset}",
        "",
        f"A `{name}` image classifier trained with cnnlab {__version__} on `{dataset}`.",
        "",
        "## The model",
        "",
        f"- model: `{name}`, options `{json.dumps(meta['model_kwargs'])}`",
        f"- parameters: {params}; multiply-accumulates per image: {macs}",
        f"- classes ({len(meta['classes'])}): {', '.join(map(str, meta['classes']))}",
        "",
        "## The input it expects",
        "",
        f"- one image of {c} channel(s), {h}x{w} pixels: a float tensor (N, {c}, {h}, {w})",
        f"- pixel values scaled to [0, 1], then normalised: (x - mean) / std with mean "
        f"{meta['mean']} and std {meta['std']}",
        f'- preprocessing style "{style}": {STYLE_TEXT.get(style, style)}',
        "- `cnnlab.load(...).predict(...)` and `cnnlab predict` do all of this for you",
    ]


def _training_sections(folder: Path, meta: dict, config: dict, metrics: list[dict]) -> list[str]:
    """How it was trained and its limits."""
    done, planned = len(metrics), config.get("epochs", len(metrics))
    seconds = sum(m.get("seconds", 0) for m in metrics)
    k = len(meta["classes"])
    return [
        "## How it was trained",
        "",
        f"{done} of {planned} epoch(s), {seconds:.1f} s of training:",
        "",
        "```",
        train_command(config, folder),
        "```",
        *_unflagged(config, folder),
        "",
        "## Limits",
        "",
        f"- It has seen only `{meta['dataset']}`: images unlike those (other styles, photos, "
        "several objects) get confident, wrong answers.",
        f'- There is no "none of these" answer: every input gets one of the {k} classes.',
        "- The accuracy above is on that dataset's own test split; on your images it can be lower.",
        *([f"- Unfinished: {done} of {planned} planned epochs."] if done < planned else []),
    ]


def _unflagged(config: dict, folder: Path) -> list[str]:
    """What the flags above cannot say: bf16 left to the hardware (the `fast` recipe's)."""
    if "bf16" not in config or config["bf16"] is not None:
        return []
    return [
        "",
        "bf16 was left to the hardware (on only on CUDA and on CPUs with AMX tiles); no flag says "
        "that, so the command above trains in float32 unless `--bf16` is added. "
        f"`cnnlab train --config {folder / 'config.json'}` repeats every setting as it was.",
    ]


def _usage_section(folder: Path) -> list[str]:
    """The three lines to load and predict, and the commands."""
    return [
        "## Use it",
        "",
        "```python",
        "import cnnlab",
        f"p = cnnlab.load({json.dumps(str(folder))})",
        'p.predict(["digit.png"])',
        "```",
        "",
        f"Or `cnnlab predict {folder} digit.png`; `cnnlab export {folder} --format onnx` "
        "for other runtimes.",
    ]


def model_card(run_dir: str | os.PathLike) -> str:
    """The Markdown model card of a run folder (one with at least one complete epoch).

    Raises:
        CheckpointError: the weights header, config.json or metrics.json is missing or broken.
    """
    folder = Path(run_dir)
    meta = runs.weights_metadata(folder / runs.WEIGHTS)
    config = runs.read_json(folder / runs.CONFIG) if (folder / runs.CONFIG).is_file() else {}
    metrics = runs.read_json(folder / runs.METRICS) if (folder / runs.METRICS).is_file() else []
    sections = [
        *_model_sections(folder, meta),
        "",
        "## Scores",
        "",
        *_scores(metrics, config),
        "",
        *_per_class(folder),
        "",
        *_training_sections(folder, meta, config, metrics),
        "",
        *_usage_section(folder),
    ]
    return "\n".join(sections) + "\n"


def write_model_card(run_dir: str | os.PathLike) -> Path:
    """Write (or refresh) `RUN/README.md` atomically; returns its path."""
    folder = Path(run_dir)
    return io.write_text(folder / runs.MODEL_CARD, model_card(folder))
