"""Training: `fit(config, out_dir)` trains a registered model and writes a run folder.

Read top to bottom: `train_one_epoch`, then `fit`: build the model, optimiser (cnnlab.optim)
and schedule, and per epoch train, evaluate, check for a collapse and save the run folder.
Progress goes to a callback as small dicts (the CLI draws a bar from them); this module never
prints. Resume is exact: the epoch's permutation and augmentation come from (seed, epoch), and
the RNG, optimiser and scheduler states are saved at every epoch end (`cnnlab.checkpoint`).
Under torchrun the same loop runs in every process (see cnnlab.distributed): batch_size is the
global batch, split evenly; rank 0 alone writes the run folder and reports progress.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab import checkpoint, distributed, io, run_logs, runs
from cnnlab.collapse import check_collapse
from cnnlab.config import TrainConfig, input_normalisation
from cnnlab.cuda_graphs import CapturedStep, cuda_graphs_apply
from cnnlab.data.factory import Batches, first_images, load_batches
from cnnlab.devices import autocast, prepare_training_process, resolve_device, use_bf16
from cnnlab.errors import CheckpointError, TrainingDivergedError
from cnnlab.evaluation import evaluate, global_sums
from cnnlab.metrics import smoothed_loss_floor
from cnnlab.model_card import write_model_card
from cnnlab.models import get_model
from cnnlab.optim import SCHEDULES, Optimizer, make_optimizer

Callback = Callable[[dict], None]

# Training images a model's `init_from_data` sees (enough for fast's 25x25 patch covariance)
INIT_IMAGES = 512


@dataclass
class FitResult:
    """What `fit` returns: the trained model (on its device, eval mode) and its history."""

    model: nn.Module
    config: TrainConfig
    metrics: list[dict]
    info: object  # the DatasetInfo of the training data
    out_dir: Path | None
    train_seconds: float  # training steps only (no evaluation, no file writing)

    @property
    def final(self) -> dict:
        return self.metrics[-1] if self.metrics else {}


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during fit: the last completed epoch is saved and can be resumed.

    `resumable` says whether out_dir holds enough to resume (at least its config.json).
    """

    def __init__(self, out_dir: Path | None, epochs_done: int, resumable: bool = True):
        super().__init__(f"interrupted after {epochs_done} epoch(s)")
        self.out_dir, self.epochs_done, self.resumable = out_dir, epochs_done, resumable


# --- one epoch ------------------------------------------------------------------------------------


def _check_finite(mean_loss: float, optimizer, epoch: int, step: int) -> None:
    if not math.isfinite(mean_loss):
        lr = float(optimizer.param_groups[0]["lr"])
        raise TrainingDivergedError(
            f"the loss became {mean_loss} at epoch {epoch + 1}, step {step}: the learning rate "
            f"{lr:.3g} is too high; divide --lr by 10"
        )


def _step(model, optimizer, loss_fn, x, y, bf16: bool):
    """Forward, loss, backward, optimiser step; (logits, loss)."""
    with autocast(x.device, bf16):
        logits = model(x)
        loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits, loss


def _step_event(where: dict, sums: list, elapsed: float, optimizer) -> dict:
    """The "step" progress event: the epoch's running loss, accuracy and speed so far."""
    loss, correct, seen = sums
    return {
        "event": "step",
        **where,
        "loss": loss / seen,
        "acc": correct / seen,
        "images_per_s": seen / max(elapsed, 1e-9),
        "lr": float(optimizer.param_groups[0]["lr"]),
    }


def train_one_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: Optimizer,
    loss_fn: nn.Module,
    *,
    scheduler=None,
    bf16: bool = False,
    callback: Callback | None = None,
    epoch: int = 0,
    report_every: int = 20,
    cuda_graph: bool = False,
) -> dict:
    """One pass over `batches`; returns loss, acc, seconds, images_per_s (training only).

    With `cuda_graph` (a CUDA model, adam/adamw) full batches replay a recorded CUDA graph
    (the same arithmetic, one launch per step). Calls `callback` with {"event": "step", ...}
    every `report_every` steps. Raises TrainingDivergedError as soon as the loss is not finite.
    On one rank's shard of a distributed job the numbers are the whole job's.
    """
    model.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, steps, reported = 0, len(batches), 0
    start = time.perf_counter()
    captured = CapturedStep(model, optimizer, loss_fn, bf16) if cuda_graph else None
    try:
        for step, (x, y) in enumerate(batches, 1):
            if captured is not None:
                logits, loss = captured(x, y)
            else:
                logits, loss = _step(model, optimizer, loss_fn, x, y, bf16)
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if step % report_every == 0 or step == steps:
                sums = global_sums(batches, [loss_sum, correct, seen], device)
                _check_finite(sums[0] / sums[2], optimizer, epoch, step)
                if callback:
                    where = {"epoch": epoch, "step": step, "steps": steps, "advance": step - reported}
                    callback(_step_event(where, sums, time.perf_counter() - start, optimizer))
                    reported = step
    finally:
        if captured is not None:
            captured.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    loss_total, correct, seen = global_sums(batches, [loss_sum, correct, seen], device)
    n = max(seen, 1)
    return {
        "loss": loss_total / n,
        "acc": correct / n,
        "seconds": seconds,
        "images_per_s": seen / max(seconds, 1e-9),
        "samples": int(seen),
    }


# --- fit ------------------------------------------------------------------------------------------


@dataclass
class _Job:
    """Everything fit builds before the first step."""

    ctx: object
    model: nn.Module  # the plain model: evaluated and saved
    train_model: nn.Module  # DDP-wrapped under torchrun
    optimizer: Optimizer
    scheduler: object
    loss_fn: nn.Module
    train_batches: Batches
    val_batches: Batches | None
    test_batches: Batches
    info: object
    meta: dict
    bf16: bool
    graphs: bool
    init_seconds: float = 0.0
    probe: torch.Tensor | None = None  # test images for the dead-ReLU diagnosis


def _build(config: TrainConfig, fresh: bool, emit: Callback, dist_timeout: float | None) -> _Job:
    """Device, data, model (with any data-derived init), optimiser, schedule, loss."""
    prepare_training_process(config.threads)
    ctx = distributed.setup(resolve_device(config.device), timeout_s=dist_timeout)
    bf16 = use_bf16(config.bf16, ctx.device)
    if config.bf16 and not bf16:
        emit(
            {
                "event": "warning",
                "message": f"bf16 ignored: {ctx.device.type} here has no fast bfloat16 (needs CUDA "
                "or a CPU with AVX512-BF16); training in float32, about twice as long (the best "
                "recipe: about 70 min on 2 AVX2 cores; --epochs 6 for a third of that)",
            }
        )
    torch.manual_seed(config.seed)  # the initial weights and dropout masks
    with distributed.local_main_first(ctx):  # one process per machine fetches the files
        decoding = lambda split, done, total: emit(  # noqa: E731 (an image folder's one pass)
            {"event": "decode", "split": split, "done": done, "total": total}
        )
        splits = load_batches(config, ctx.device, ctx.rank, ctx.world_size, progress=decoding)
    train_batches, info = splits.train, splits.info
    model = get_model(config.model, info.image_shape, info.num_classes, **config.model_kwargs).to(
        ctx.device
    )
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    init_s = 0.0
    if fresh and hasattr(model, "init_from_data"):  # e.g. fast's whitening stem
        # before DDP wraps the model, so every rank starts from rank 0's result; timed as training
        t0 = time.perf_counter()
        model.init_from_data(first_images(train_batches, INIT_IMAGES))
        init_s = time.perf_counter() - t0
    train_model = distributed.wrap_model(model, ctx, sync_bn=config.sync_bn)
    model = distributed.unwrap(train_model)
    graphs = cuda_graphs_apply(config, ctx.device, ctx.world_size)
    optimizer = make_optimizer(config, model.parameters(), capturable=graphs)
    steps = config.epochs * len(train_batches)
    scheduler = SCHEDULES[config.schedule](optimizer, config.lr, steps, config.cycle_momentum)
    mean, std = input_normalisation(config, info)
    meta = runs.run_metadata(config.model, config.model_kwargs, info, {"mean": mean, "std": std})
    return _Job(
        ctx,
        model,
        train_model,
        optimizer,
        scheduler,
        nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        train_batches,
        splits.val,
        splits.test,
        info,
        meta,
        bf16,
        graphs,
        init_s,
        next(iter(splits.test))[0][:256],
    )


def _restore(job: _Job, state: dict, config: TrainConfig, run_dir) -> list[dict]:
    """Load a resume state into the model, optimiser, scheduler and RNG; the metrics so far."""
    try:
        job.model.load_state_dict(state["model"])
        job.optimizer.load_state_dict(state["optimizer"])
        if job.scheduler is not None:
            job.scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        return list(state["metrics"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # an edited resume state
        raise CheckpointError(
            f"{run_dir}: its resume state does not fit {config.model} ({type(e).__name__}: "
            f"{str(e)[:200]}); start a new run"
        ) from None


def _train_epoch(job: _Job, config: TrainConfig, epoch: int, callback: Callback | None) -> dict:
    """Train and evaluate one epoch; its metrics.json row."""
    if callback:
        steps = len(job.train_batches)
        callback({"event": "epoch_start", "epoch": epoch, "epochs": config.epochs, "steps": steps})
    job.train_batches.set_epoch(epoch)
    if job.ctx.rank:  # ranks > 0: dropout masks of their own, replayable from (seed, epoch)
        torch.manual_seed(distributed.rank_seed(config.seed, epoch, job.ctx.rank))
    tr = train_one_epoch(
        job.train_model,
        job.train_batches,
        job.optimizer,
        job.loss_fn,
        scheduler=job.scheduler,
        bf16=job.bf16,
        callback=callback,
        epoch=epoch,
        cuda_graph=job.graphs,
    )
    distributed.broadcast_buffers(job.model, job.ctx)  # every rank evaluates rank 0's model
    last = epoch == config.epochs - 1
    tta = config.tta if last else 0  # TTA for the final figures only
    seconds = tr["seconds"] + (job.init_seconds if epoch == 0 else 0.0)  # the init is training
    row = {"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"]}
    if job.val_batches is not None:
        val = evaluate(job.model, job.val_batches, bf16=job.bf16, tta=tta)
        row.update(val_loss=val["loss"], val_acc=val["acc"])
    if job.val_batches is None or last:  # with a validation split the test set is seen once
        test = evaluate(job.model, job.test_batches, bf16=job.bf16, tta=tta)  # +acc_one_pass
        row.update({f"test_{k}": v for k, v in test.items() if k in ("loss", "acc", "acc_one_pass")})
    lr = float(job.optimizer.param_groups[0]["lr"])
    return {**row, "seconds": seconds, "images_per_s": tr["images_per_s"], "lr": lr, "tta": tta}


def _save(job: _Job, out_dir: Path, config: TrainConfig, metrics: list[dict], logger) -> None:
    steps = logger.steps if logger is not None else ()
    checkpoint.save_epoch(
        out_dir, job.model, job.optimizer, job.scheduler, config, metrics, job.meta, steps
    )


def _start_folder(job: _Job, out_dir: Path, config: TrainConfig, metrics: list[dict], logger) -> None:
    """config.json and, for a fresh run, the epoch-0 state (so epoch 1 can already be resumed)."""
    runs.remove_stale_parts(out_dir)  # left by a killed run; this process is the writer now
    with checkpoint.disk_errors(out_dir, len(metrics)):
        io.write_json(out_dir / runs.CONFIG, asdict(config))
    if not metrics:
        _save(job, out_dir, config, metrics, logger)


def _finish_folder(job: _Job, out_dir: Path, config: TrainConfig, metrics: list[dict], logger) -> None:
    """After the last epoch: the model card and the TensorBoard summary (hparams, confusion)."""
    with checkpoint.disk_errors(out_dir, len(metrics)):
        write_model_card(out_dir)
        logger.finish(config, metrics, job.model, job.test_batches, job.info.classes, job.bf16)


def _start_event(job: _Job, config: TrainConfig, metrics: list[dict], out_dir) -> dict:
    return {
        "event": "start",
        "config": asdict(config),
        "device": str(job.ctx.device),
        "bf16": job.bf16,
        "cuda_graphs": job.graphs,
        "val_samples": job.val_batches.num_samples * job.ctx.world_size if job.val_batches else 0,
        "train_samples": job.train_batches.num_samples * job.ctx.world_size,
        "steps": len(job.train_batches),
        "start_epoch": len(metrics),
        "out_dir": out_dir,
        "processes": job.ctx.world_size,
        "train_loss_floor": smoothed_loss_floor(config.label_smoothing, len(job.info.classes)),
    }


def fit(
    config: TrainConfig,
    out_dir: str | Path | None = None,
    callback: Callback | None = None,
    resume_from: str | Path | None = None,
    dist_timeout: float | None = None,
) -> FitResult:
    """Train `config.model` on `config.dataset`; write the run folder when out_dir is given.

    Args:
        config: the run's settings (see TrainConfig).
        out_dir: run folder to write (see cnnlab.runs); None trains in memory only.
        callback: receives progress dicts: {"event": "start" | "epoch_start" | "step" |
            "epoch_end" | "warning" | "interrupted", ...}.
        resume_from: a run folder to continue; out_dir defaults to it. A folder holding only
            its config.json (stopped before its first save) starts again from epoch 0.
        dist_timeout: under torchrun, seconds a process waits for the others.

    Under torchrun every process calls fit alike; rank 0 alone writes out_dir and gets callbacks.

    Raises:
        TrainingDivergedError: NaN loss, or still at chance after the first epoch.
        TrainingInterrupted: Ctrl-C; the last completed epoch is saved for `resume_from`.
        ConfigError, DatasetNotFoundError, CheckpointError: bad settings, data or run folder.
    """
    config.validate()
    main = distributed.is_main_process()  # rank 0 reports for the job
    state = checkpoint.resume_state(resume_from, config)
    out_dir = Path(out_dir) if out_dir is not None else (Path(resume_from) if resume_from else None)
    saved = len(state["metrics"]) if state else 0  # epochs on disk: what a resume continues from
    logger = run_logs.run_logger(out_dir, state, resume_from, config.tensorboard) if main else None
    callback = run_logs.tee(logger, callback if main else None)
    emit = callback or (lambda event: None)
    try:
        job = _build(config, state is None, emit, dist_timeout)
        metrics = _restore(job, state, config, resume_from) if state is not None else []
        writes = out_dir is not None and job.ctx.is_main
        if writes:
            _start_folder(job, out_dir, config, metrics, logger)
        emit(_start_event(job, config, metrics, out_dir))
        for epoch in range(len(metrics), config.epochs):
            metrics.append(_train_epoch(job, config, epoch, callback))
            with checkpoint.sigint_deferred():  # a Ctrl-C during the save is counted after it
                if writes:
                    _save(job, out_dir, config, metrics, logger)
                saved = len(metrics)
            emit({"event": "epoch_end", "epochs": config.epochs, **metrics[-1]})  # after the save
            if epoch == 0:
                check_collapse(config, metrics[-1], job.info.num_classes, job.model, job.probe)
        job.model.eval()
        if writes:
            _finish_folder(job, out_dir, config, metrics, logger)
    except KeyboardInterrupt:
        resumable = out_dir is not None and (out_dir / runs.CONFIG).is_file()
        emit({"event": "interrupted", "epochs_done": saved, "out_dir": out_dir, "resumable": resumable})
        raise TrainingInterrupted(out_dir, saved, resumable) from None
    finally:
        if logger is not None:
            logger.close()
    return FitResult(job.model, config, metrics, job.info, out_dir, sum(m["seconds"] for m in metrics))
