"""`cnnlab compare MODEL [MODEL ...]`: same data, same seed, one report.

Budgets are shared unless given per model: `--epochs 3` or `--epochs mlp=2,cnn=3` (the same
for --lr and --batch-size). Without --recipe, `mlp` trains with the lesson's settings (the
lesson-mlp recipe's optimiser, lr, batch, schedule and raw inputs, as in `cnnlab demo`) except
where a flag sets them.
"""

from __future__ import annotations

import argparse

from cnnlab.cli.config_flags import add_config_options, config_overrides
from cnnlab.cli.output import format_table
from cnnlab.cli.train import Progress

# settings that may differ per model: `--epochs mlp=2,cnn=3`
PER_MODEL = {"epochs": int, "batch_size": int, "lr": float}


def register(sub, common) -> None:
    p = sub.add_parser(
        "compare",
        parents=[common],
        help="train several models, compare them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="model names (see `cnnlab models`)")
    add_config_options(p, exclude=("model", "model_kwargs"), as_text=PER_MODEL)
    p.add_argument("--out", default="runs/compare", help="report folder (default: runs/compare)")
    p.set_defaults(func=cmd_compare)


def split_per_model(overrides: dict, models: list[str]) -> tuple[dict, dict[str, dict]]:
    """Separate `--epochs mlp=2,cnn=3` style values into per-model settings."""
    from cnnlab.errors import ConfigError

    shared, per_model = dict(overrides), {}
    for key, kind in PER_MODEL.items():
        text = shared.get(key)
        if text is None or "=" not in str(text):
            continue
        del shared[key]
        for part in str(text).split(","):
            name, _, value = part.partition("=")
            if name not in models:
                raise ConfigError(f"--{key.replace('_', '-')}: {name!r} is not among {models}")
            try:
                per_model.setdefault(name, {})[key] = kind(value)
            except ValueError:
                raise ConfigError(f"--{key.replace('_', '-')}: {value!r} is not a number") from None
    for key, kind in PER_MODEL.items():
        if key in shared:
            try:
                shared[key] = kind(shared[key])
            except ValueError:
                raise ConfigError(f"--{key.replace('_', '-')} must be a number or NAME=N,...") from None
    return shared, per_model


def with_lesson_settings(models: list[str], shared: dict, per_model: dict) -> dict[str, dict]:
    """per_model plus each model's lesson settings (`mlp`: lesson-mlp's) that no flag overrides."""
    from cnnlab.reports.compare import lesson_settings

    merged = {}
    for name in models:
        given = per_model.get(name, {})
        settings = {**lesson_settings(name, explicit=[*shared, *given]), **given}
        if settings:
            merged[name] = settings
    return merged


def cmd_compare(args) -> int:
    from cnnlab.config import make_config
    from cnnlab.reports.compare import REPORT, compare_models, lesson_sentence, table_rows

    shared, per_model = split_per_model(config_overrides(args), args.models)
    if args.recipe is None:
        per_model = with_lesson_settings(args.models, shared, per_model)
    base = make_config(args.recipe, **shared)
    progress = _ModelProgress(args)
    try:
        rows = compare_models(args.models, args.out, base, per_model, callback=progress)
    finally:
        progress.close()
    headers, body = table_rows(rows)
    print(format_table(headers, body))
    print(lesson_sentence(rows))
    print(f"report: {args.out}/{REPORT} (run folders: " + ", ".join(str(r.run_dir) for r in rows) + ")")
    return 0


class _ModelProgress(Progress):
    """Progress that names the model being trained."""

    def __call__(self, event: dict) -> None:
        if event["event"] == "model":
            self.label = f"[{event['name']}] "
            return
        super().__call__(event)
