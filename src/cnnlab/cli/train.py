"""`cnnlab train`: train a model into a run folder; `--resume RUN` continues one.

The flags mirror TrainConfig (kebab-case). A flag left out takes its value from `--config FILE`
(a run's config.json, or a TOML file of the same fields), then the recipe (`--recipe`), else
TrainConfig's default.

Several processes (CPU cores, GPUs, machines): `torchrun --nproc_per_node N -m cnnlab train ...`
with the same flags. --batch-size stays the global batch (each process takes 1/N of it), so
the same flags train the same model whatever N; rank 0 prints and writes the run folder.
"""

from __future__ import annotations

import argparse
import sys
import time

from cnnlab.cli.config_flags import add_config_options, config_overrides
from cnnlab.cli.events import EventLog, with_final_event
from cnnlab.cli.output import progress_enabled


def register(sub, common) -> None:
    p = sub.add_parser(
        "train",
        parents=[common],
        help="train a model into a run folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p)
    p.add_argument(
        "--config",
        metavar="FILE",
        dest="config_file",
        help="settings from a run's config.json or a TOML file of TrainConfig fields; flags "
        "override them (default: none)",
    )
    p.add_argument(
        "--dist-timeout",
        type=float,
        metavar="SECONDS",
        help="under torchrun: how long a process waits for the others before the job "
        "fails (default: 600)",
    )
    p.add_argument("--out", help="run folder (default: runs/MODEL-DATE-TIME)")
    p.add_argument("--resume", metavar="RUN", help="continue this run folder (default: none)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a run already in --out (default: refuse)"
    )
    p.add_argument("--events", metavar="FILE", help="append progress as JSON lines (default: none)")
    p.set_defaults(func=with_final_event(cmd_train))


def epoch_line(row: dict) -> str:
    """`epoch 2/3: train loss .. acc .. | val .. | test .. | 4.1s, 14000 images/s`."""
    train = f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%"
    parts = [f"epoch {row['epoch']}/{row['epochs']}: {train}"]
    for split in ("val", "test"):
        if f"{split}_acc" in row:
            parts.append(f"{split} loss {row[f'{split}_loss']:.4f} acc {100 * row[f'{split}_acc']:.2f}%")
    parts.append(f"{row['seconds']:.1f}s, {row['images_per_s']:.0f} images/s")
    return " | ".join(parts)


class Progress:
    """Turns fit's events into a tqdm bar per epoch (TTY only) and one line per epoch."""

    def __init__(self, args, label: str = ""):
        self.bars, self.quiet, self.label = progress_enabled(args), args.quiet, label
        self.bar = None

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "epoch_start" and self.bars:
            from tqdm import tqdm

            desc = f"{self.label}epoch {event['epoch'] + 1}/{event['epochs']}"
            self.bar = tqdm(
                total=event["steps"],
                desc=desc,
                unit="step",
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        elif kind == "step" and self.bar is not None:
            self.bar.update(event["advance"])
            self.bar.set_postfix(
                loss=f"{event['loss']:.4f}",
                acc=f"{100 * event['acc']:.2f}%",
                img_s=f"{event['images_per_s']:.0f}",
                refresh=False,
            )
        elif kind == "epoch_end":
            self.close()
            if not self.quiet:
                print(self.label + epoch_line(event), flush=True)
        elif kind == "start" and not self.quiet:
            c = event["config"]
            again = f", resuming after epoch {event['start_epoch']}" if event["start_epoch"] else ""
            n = event.get("processes", 1)
            where = f"{n} processes ({event['device']} on rank 0)" if n > 1 else event["device"]
            where += " in bf16" if event.get("bf16") else ""
            held = (
                f", {event['val_samples']} held out for validation" if event.get("val_samples") else ""
            )
            print(
                f"{self.label}training {c['model']} on {c['dataset']} ({event['train_samples']} "
                f"images{held}, {event['steps']} steps/epoch) on {where}{again}",
                flush=True,
            )
        elif kind == "decode" and self.bars:
            self._decode_bar(event)
        elif kind == "warning":
            print(f"cnnlab: warning: {event['message']}", file=sys.stderr)
        elif kind == "interrupted":
            self.close()

    def _decode_bar(self, event: dict) -> None:
        """An image folder decoded once into memory: one bar per split."""
        from tqdm import tqdm

        if self.bar is None:
            desc = f"{self.label}decoding {event['split']} images"
            self.bar = tqdm(total=event["total"], desc=desc, unit="img", leave=False, file=sys.stderr)
        self.bar.update(event["done"] - self.bar.n)
        if event["done"] >= event["total"]:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def resume_hint(out_dir) -> str:
    return f"resume with: cnnlab train --resume {out_dir}"


def interrupted_message(e, out) -> str:
    """One line saying what a Ctrl-C left on disk and how to continue."""
    if e.epochs_done:
        return f"interrupted after {e.epochs_done} epoch(s); the run is saved in {out}; " + resume_hint(
            out
        )
    if e.resumable:
        return f"interrupted before the first epoch finished; {out} holds its settings; " + resume_hint(
            out
        )
    return "interrupted before anything was saved; start the run again"


def read_config_file(path: str) -> dict:
    """The TrainConfig settings in a JSON or TOML file; any problem is one ConfigError naming it."""
    import json
    import tomllib
    from pathlib import Path

    from cnnlab.config import TrainConfig
    from cnnlab.errors import ConfigError

    file = Path(path)
    try:
        text = file.read_text()
        settings = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or e
        raise ConfigError(
            f"{file}: cannot read it ({reason}); give a config.json or .toml file"
        ) from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        kind = "TOML" if file.suffix == ".toml" else "JSON (name a TOML file *.toml)"
        raise ConfigError(f"{file}: not valid {kind}: {str(e)[:200]}") from None
    try:
        TrainConfig.from_dict(settings).validate()
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{file}: {e}") from None
    return settings


def _config_and_out(args, overrides: dict):
    """The config to train and the run folder to write."""
    from pathlib import Path

    from cnnlab import runs
    from cnnlab.checkpoint import resume_config
    from cnnlab.config import make_config
    from cnnlab.errors import ConfigError

    if args.resume:
        if args.recipe or args.config_file:
            raise ConfigError(
                "--recipe and --config cannot be combined with --resume (the run has its config)"
            )
        return resume_config(args.resume, **overrides), Path(args.out or args.resume)
    settings = read_config_file(args.config_file) if args.config_file else {}
    config = make_config(args.recipe, settings, **overrides)
    out = Path(args.out or f"runs/{config.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / runs.WEIGHTS).exists() and not args.overwrite:
        raise ConfigError(
            f"{out} already holds a run; choose another --out, `--resume {out}`, or --overwrite"
        )
    return config, out


def cmd_train(args) -> int:
    from cnnlab import distributed
    from cnnlab.train import TrainingInterrupted, fit

    config, out = _config_and_out(args, config_overrides(args))
    progress = EventLog(args.events, Progress(args))
    try:
        result = fit(
            config, out, callback=progress, resume_from=args.resume, dist_timeout=args.dist_timeout
        )
    except TrainingInterrupted as e:
        progress.close()
        if distributed.is_main_process():
            print("cnnlab: " + interrupted_message(e, out), file=sys.stderr)
        return 130
    except Exception as e:
        distributed.record_error(e)  # torchrun's failure summary then names this rank's error
        raise
    finally:
        progress.close()
    distributed.cleanup()  # under torchrun, cnnlab.cli.main then ends the process at once
    if not distributed.is_main_process():
        return 0
    final = result.final
    print(
        f"{config.model}: test accuracy {100 * final['test_acc']:.2f}% (loss {final['test_loss']:.4f}) "
        f"after {len(result.metrics)} epoch{'s' if len(result.metrics) != 1 else ''}, "
        f"{result.train_seconds:.1f}s of training"
    )
    print(
        f"run folder: {out} (model.safetensors, README.md, metrics.json, metrics.csv, config.json, "
        f"curves.png); next: cnnlab eval {out}"
    )
    return 0
