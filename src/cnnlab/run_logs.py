"""Run logs: fit's progress events as `metrics.csv` and, on request, TensorBoard event files.

`RunLogger` is a callback: fit feeds it every event (beside the caller's callback). It keeps
one row per reported step (every 20 steps and the last of an epoch); those rows travel in the
resume state, so a resumed run's CSV still holds every step. `metrics.csv` is rewritten whole,
atomically, at each epoch save: one `kind=step` row per logged step and one `kind=epoch` row
per epoch, in the order they happened. With `tensorboard` it also writes event files into the
run folder through `torch.utils.tensorboard.SummaryWriter` (imported only then): scalars per
step and per epoch, the hyperparameters with the final metrics, and the test confusion matrix.
"""

from __future__ import annotations

import csv
import io as textio
import math
import os
from collections.abc import Sequence
from pathlib import Path

from cnnlab import io, runs
from cnnlab.errors import CheckpointError, ConfigError

METRICS_CSV = runs.METRICS_CSV
STEP_KEYS = ("epoch", "step", "loss", "acc", "lr", "images_per_s")
EPOCH_KEYS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "seconds",
)
COLUMNS = ("kind", *STEP_KEYS, *EPOCH_KEYS)
MAX_CSV_BYTES = 32 * 2**20  # a metrics.csv read back for display; cnnlab's own stay far below
TENSORBOARD_HINT = "pip install 'cnnlab[tensorboard]'"


def step_row(event: dict) -> dict:
    """The metrics.csv row of one "step" event (epochs counted from 1, like metrics.json)."""
    row = {k: event[k] for k in STEP_KEYS}
    row["epoch"] = int(event["epoch"]) + 1
    return row


def csv_rows(metrics: Sequence[dict], steps: Sequence[dict]) -> list[dict]:
    """Each epoch's step rows, then its epoch row; every row has all COLUMNS ('' when n/a)."""
    rows = []
    for m in metrics:
        epoch = m["epoch"]
        rows += [{"kind": "step", **s} for s in steps if s["epoch"] == epoch]
        last = max((s["step"] for s in steps if s["epoch"] == epoch), default="")
        rows.append(
            {"kind": "epoch", "step": last, **{k: m[k] for k in (*STEP_KEYS, *EPOCH_KEYS) if k in m}}
        )
    return [{c: r.get(c, "") for c in COLUMNS} for r in rows]


def write_metrics_csv(path: str | os.PathLike, metrics: Sequence[dict], steps: Sequence[dict]) -> Path:
    """Write metrics.csv (atomically) from metrics.json's rows and the logged steps."""
    buffer = textio.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(metrics, steps))
    return io.write_text(path, buffer.getvalue())


def read_step_rows(path: str | os.PathLike, limit: int = 20_000) -> list[dict]:
    """The step rows of a metrics.csv, {"epoch", "step", "loss", "acc"} each, in file order: at
    most `limit`, rows that are not finite numbers skipped; none when the file is absent, no
    CSV, or larger than MAX_CSV_BYTES."""
    try:
        if os.path.getsize(path) > MAX_CSV_BYTES:
            return []
        with open(path, newline="", encoding="utf-8") as f:
            rows = []
            for row in csv.DictReader(f):
                if row.get("kind") == "step" and (step := _step_numbers(row)) is not None:
                    rows.append(step)
                    if len(rows) >= limit:
                        break
            return rows
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _step_numbers(row: dict) -> dict | None:
    """One CSV step row as numbers (epoch and step positive whole numbers), or None."""
    try:
        epoch, step = int(row["epoch"]), int(row["step"])
        loss, acc = float(row["loss"]), float(row["acc"])
    except (KeyError, TypeError, ValueError):
        return None
    if epoch < 1 or step < 1 or not (math.isfinite(loss) and math.isfinite(acc)):
        return None
    return {"epoch": epoch, "step": step, "loss": loss, "acc": acc}


def restored_steps(state: dict, run_dir) -> list[dict]:
    """The step rows kept in a resume state (none in states older than metrics.csv)."""
    steps = state.get("steps", [])
    ok = isinstance(steps, list) and all(
        isinstance(s, dict) and set(STEP_KEYS) <= set(s) and isinstance(s["epoch"], int) for s in steps
    )
    if not ok:
        raise CheckpointError(f"{run_dir}: its resume state's step log is malformed; start a new run")
    return [dict(s) for s in steps]


def _summary_writer_class():
    """torch's SummaryWriter, or a ConfigError naming the extra that provides it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"--tensorboard needs the tensorboard package: {TENSORBOARD_HINT}") from None
    return SummaryWriter


class RunLogger:
    """Collects step rows for metrics.csv and mirrors fit's events to TensorBoard.

    Args:
        out_dir: the run folder (event files go there).
        steps: the step rows of the epochs already done (from the resume state).
        tensorboard: also write TensorBoard event files.

    Raises:
        ConfigError: tensorboard asked for but not installed.
    """

    def __init__(
        self, out_dir: str | os.PathLike, steps: Sequence[dict] = (), tensorboard: bool = False
    ):
        self.out_dir = Path(out_dir)
        self.steps = list(steps)
        self._writer_class = _summary_writer_class() if tensorboard else None
        self._writer = None

    @property
    def writer(self):
        """The SummaryWriter (created on first use, so a run that fails early leaves none)."""
        if self._writer is None and self._writer_class is not None:
            self._writer = self._writer_class(log_dir=str(self.out_dir))
        return self._writer

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "step":
            row = step_row(event)
            self.steps.append(row)
            if self._writer_class is not None:
                at = int(event["epoch"]) * int(event["steps"]) + int(event["step"])
                for key in ("loss", "acc", "lr", "images_per_s"):
                    self.writer.add_scalar(f"step/{key}", float(row[key]), at)
        elif kind == "epoch_end" and self._writer_class is not None:
            for key in (*EPOCH_KEYS, "lr"):
                if key in event:
                    split, _, name = key.partition("_")
                    tag = f"epoch/{name}_{split}" if name else f"epoch/{key}"
                    self.writer.add_scalar(tag, float(event[key]), int(event["epoch"]))

    def finish(self, config, metrics: Sequence[dict], model, test_batches, classes, bf16=False) -> None:
        """Hyperparameters with the final metrics, the test confusion matrix; close the files.

        The confusion matrix needs the whole test set, so a torchrun job (test shards) has none.
        """
        if self._writer_class is None:
            return
        final = metrics[-1] if metrics else {}
        scores = {f"final/{k}": float(v) for k, v in final.items() if k in EPOCH_KEYS}
        self.writer.add_hparams(_hparams(config), scores, run_name=".")
        if getattr(test_batches, "world_size", 1) == 1:
            from cnnlab.evaluation import evaluate
            from cnnlab.metrics import confusion_matrix

            out = evaluate(model, test_batches, bf16=bf16, return_outputs=True)
            cm = confusion_matrix(out["targets"], out["probs"].argmax(1), len(classes))
            self.writer.add_figure("test/confusion", _confusion_figure(cm, classes), len(metrics))
        self.close()

    def close(self) -> None:
        """Flush and close the event files (if any)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def run_logger(out_dir, state: dict | None, resume_from, tensorboard: bool) -> RunLogger | None:
    """fit's logger for a run folder (None without one), holding the steps of a resumed run."""
    if out_dir is None:
        return None
    steps = restored_steps(state, resume_from) if state else []
    return RunLogger(out_dir, steps, tensorboard=tensorboard)


def tee(logger: RunLogger | None, callback):
    """One callback feeding the run logger and the caller's callback."""
    if logger is None or callback is None:
        return logger or callback

    def both(event: dict) -> None:
        logger(event)
        callback(event)

    return both


def _hparams(config) -> dict:
    """TrainConfig as TensorBoard hparams (numbers, strings and bools only)."""
    from dataclasses import asdict

    out = {}
    for k, v in asdict(config).items():
        if isinstance(v, bool | str) or (isinstance(v, int | float) and math.isfinite(v)):
            out[k] = v
        else:
            out[k] = str(v)
    return out


def _confusion_figure(confusion, classes: Sequence[str]):
    """A row-normalised confusion matrix as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ticks = list(range(len(classes)))
    ax.set_xticks(ticks, list(classes), fontsize=7)
    ax.set_yticks(ticks, list(classes), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("test set (% of each true class)")
    fig.tight_layout()
    return fig
