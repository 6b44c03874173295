"""`cnnlab train`: train a model into a run folder; `--resume RUN` continues one.

The flags mirror TrainConfig (kebab-case). A flag left out takes the recipe's value (with
`--recipe`), else TrainConfig's default.

Several processes (CPU cores, GPUs, machines): `torchrun --nproc_per_node N -m cnnlab train ...`
with the same flags. --batch-size stays the global batch (each process takes 1/N of it), so
the same flags train the same model whatever N; rank 0 prints and writes the run folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from cnnlab.cli.output import progress_enabled

# TrainConfig defaults repeated for --help only (importing train here would load torch).
DEFAULTS = {"model": "cnn", "dataset": "mnist", "epochs": 3, "batch_size": 128, "lr": 0.01,
            "optimizer": "adam", "schedule": "onecycle", "weight_decay": 0.0,
            "label_smoothing": 0.0, "seed": 0, "device": "auto"}  # fmt: skip


def json_object(text: str) -> dict:
    """--model-kwargs: a JSON object; anything else is argparse's usage error, not a traceback."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({type(e).__name__})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, like '{\"hidden\": [128]}'")
    return value


def add_config_options(p: argparse.ArgumentParser, models_flag: bool = True) -> None:
    """The TrainConfig flags (all default to None: unset means recipe or TrainConfig default)."""
    d = DEFAULTS
    if models_flag:
        p.add_argument("--model", help=f"model name, see `cnnlab models` (default: {d['model']})")
        p.add_argument(
            "--model-kwargs",
            type=json_object,
            metavar="JSON",
            help="builder options as JSON, e.g. '{\"channels\": [6, 1]}' (default: {})",
        )
    p.add_argument(
        "--recipe",
        help="named settings: lesson-mlp, lesson-cnn, fast (99 %% in one "
        "CPU epoch), best (most accurate in ~10 min) (default: none)",
    )
    p.add_argument(
        "--dataset", help=f"mnist, fashion-mnist or imagefolder:PATH (default: {d['dataset']})"
    )
    p.add_argument(
        "--root", dest="data_root", help="data root (default: $CNNLAB_DATA or ~/.cache/cnnlab)"
    )
    p.add_argument("--epochs", help=f"epochs (default: {d['epochs']})")
    p.add_argument(
        "--batch-size",
        help="images per step, global: under torchrun each of N "
        "processes takes 1/N of it, so keep --lr when changing N; when you multiply "
        "--batch-size by k, multiply --lr by k (sgd) or sqrt(k) (adam) "
        f"(default: {d['batch_size']})",
    )
    p.add_argument("--lr", help=f"(peak) learning rate (default: {d['lr']})")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], help=f"(default: {d['optimizer']})")
    p.add_argument(
        "--schedule",
        choices=["constant", "onecycle", "cosine"],
        help=f"learning-rate schedule (default: {d['schedule']})",
    )
    p.add_argument(
        "--adam-betas",
        type=float,
        nargs=2,
        metavar=("B1", "B2"),
        help="Adam's moment decay rates (default: 0.9 0.999)",
    )
    p.add_argument("--weight-decay", type=float, help=f"(default: {d['weight_decay']})")
    p.add_argument("--label-smoothing", type=float, help=f"(default: {d['label_smoothing']})")
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="random +-2 px shifts of each training image (default: off)",
    )
    p.add_argument(
        "--rotate",
        type=float,
        metavar="DEG",
        help="with --augment, also rotate by up to +-DEG degrees (default: 0)",
    )
    p.add_argument(
        "--scale",
        type=float,
        metavar="S",
        help="with --augment, also scale by 1 +- S, e.g. 0.1 (default: 0)",
    )
    p.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        help="standardise inputs by the dataset's mean/std; --no-normalize feeds "
        "[0, 1] pixels as the lesson did (default: on)",
    )
    p.add_argument("--seed", type=int, help=f"(default: {d['seed']})")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        help=f"auto = cuda, then mps, then cpu (default: {d['device']})",
    )
    p.add_argument("--threads", type=int, help="CPU threads (default: one per core)")
    p.add_argument("--train-subset", type=int, help="use the first N training images (default: all)")
    p.add_argument("--test-subset", type=int, help="use the first N test images (default: all)")
    p.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, help="NHWC memory layout (default: on)"
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        help="bfloat16 autocast on CUDA / AVX512-BF16 CPUs (default: off)",
    )
    p.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        help="on CUDA with adam/adamw, replay each step as a recorded CUDA graph (default: on)",
    )
    p.add_argument(
        "--tta",
        type=int,
        help="test-time augmentation: also average over N one-pixel shifts, 0-8 (default: 0)",
    )


NUMERIC = {"epochs": int, "batch_size": int, "lr": float}


def config_overrides(args, numeric=True) -> dict:
    """The TrainConfig settings given on the command line (unset flags left out)."""
    from cnnlab.errors import ConfigError

    keys = ["model", "model_kwargs", "dataset", "data_root", "epochs", "batch_size", "lr",
            "optimizer", "adam_betas", "schedule", "weight_decay", "label_smoothing", "augment",
            "rotate", "scale",
            "normalize", "seed", "device", "threads", "train_subset", "test_subset",
            "channels_last", "bf16", "cuda_graphs", "tta", "sync_bn"]  # fmt: skip
    out = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if numeric:
        for key, kind in NUMERIC.items():
            if key in out:
                try:
                    out[key] = kind(out[key])
                except ValueError:
                    flag = "--" + key.replace("_", "-")
                    raise ConfigError(f"{flag} must be a number, not {out[key]!r}") from None
    return out


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
        "--sync-bn",
        action=argparse.BooleanOptionalAction,
        help="under torchrun on GPUs: BatchNorm statistics over the global batch, "
        "not each process's share (default: off)",
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
    p.set_defaults(func=cmd_train)


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
            self.bar = tqdm(total=event["steps"], desc=desc, unit="step", leave=False,
                            file=sys.stderr, dynamic_ncols=True)  # fmt: skip
        elif kind == "step" and self.bar is not None:
            self.bar.update(event["advance"])
            self.bar.set_postfix(loss=f"{event['loss']:.4f}", acc=f"{100 * event['acc']:.2f}%",
                                 img_s=f"{event['images_per_s']:.0f}", refresh=False)  # fmt: skip
        elif kind == "epoch_end":
            self.close()
            if not self.quiet:
                print(f"{self.label}epoch {event['epoch']}/{event['epochs']}: "
                      f"train loss {event['train_loss']:.4f} acc {100 * event['train_acc']:.2f}% | "
                      f"test loss {event['test_loss']:.4f} acc {100 * event['test_acc']:.2f}% | "
                      f"{event['seconds']:.1f}s, {event['images_per_s']:.0f} images/s",
                      flush=True)  # fmt: skip
        elif kind == "start" and not self.quiet:
            c = event["config"]
            again = f", resuming after epoch {event['start_epoch']}" if event["start_epoch"] else ""
            n = event.get("processes", 1)
            where = f"{n} processes ({event['device']} on rank 0)" if n > 1 else event["device"]
            print(
                f"{self.label}training {c['model']} on {c['dataset']} ({event['train_samples']} "
                f"images, {event['steps']} steps/epoch) on {where}{again}",
                flush=True,
            )
        elif kind == "warning":
            print(f"cnnlab: warning: {event['message']}", file=sys.stderr)
        elif kind == "interrupted":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def resume_hint(out_dir) -> str:
    return f"resume with: cnnlab train --resume {out_dir}"


def cmd_train(args) -> int:
    from pathlib import Path

    from cnnlab import distributed, runs
    from cnnlab.errors import ConfigError
    from cnnlab.train import TrainingInterrupted, fit, make_config, resolve_device, resume_config

    overrides = config_overrides(args)
    if args.resume:
        if args.recipe:
            raise ConfigError("--recipe cannot be combined with --resume (the run has its config)")
        config = resume_config(args.resume, **overrides)
        out = Path(args.out) if args.out else Path(args.resume)
    else:
        config = make_config(args.recipe, **overrides)
        out = Path(args.out or f"runs/{config.model}-{time.strftime('%Y%m%d-%H%M%S')}")
        if (out / runs.WEIGHTS).exists() and not args.overwrite:
            raise ConfigError(f"{out} already holds a run; choose another --out, "
                              f"`--resume {out}`, or --overwrite")  # fmt: skip
    progress = Progress(args)
    try:
        # under torchrun: join the job (no-op otherwise); fit trains this process's shard
        ctx = distributed.setup(resolve_device(config.device), timeout_s=args.dist_timeout)
        result = fit(config, out, callback=progress, resume_from=args.resume)
    except TrainingInterrupted as e:
        progress.close()
        if distributed.is_main_process():
            print(f"cnnlab: interrupted after {e.epochs_done} epoch(s); the run is saved in {out}; "
                  + resume_hint(out), file=sys.stderr)  # fmt: skip
        return 130
    except Exception as e:
        distributed.record_error(e)  # torchrun's failure summary then names this rank's error
        raise
    finally:
        progress.close()
    distributed.cleanup()
    if not ctx.is_main:
        return 0
    final = result.final
    print(f"{config.model}: test accuracy {100 * final['test_acc']:.2f}% (loss "
          f"{final['test_loss']:.4f}) after {len(result.metrics)} epochs, "
          f"{result.train_seconds:.1f}s of training")  # fmt: skip
    print(f"run folder: {out} (model.safetensors, metrics.json, config.json, curves.png); "
          f"next: cnnlab eval {out}")  # fmt: skip
    return 0
