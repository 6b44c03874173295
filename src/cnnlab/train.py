"""Training: `fit(TrainConfig(...), out_dir)` trains a registered model and writes a run folder.

The loop reads top to bottom: load the data as batches, build the model, optimiser and
schedule, then per epoch `train_one_epoch`, `evaluate`, the collapse check and the run folder
files. Progress goes to a callback as small dicts (the CLI draws a tqdm bar from them); this
module never prints. Resume is exact: the epoch's permutation and augmentation come from
(seed, epoch), and the RNG, optimiser and scheduler states are saved at every epoch end.
Under torchrun the same loop runs in every process (see cnnlab.distributed): batch_size is the
global batch, split evenly; rank 0 alone writes the run folder and reports progress.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from cnnlab import distributed, runs
from cnnlab.collapse import check_collapse, dead_relu_fraction  # noqa: F401 (re-exported)
from cnnlab.data.batches import Augment, InMemoryBatches
from cnnlab.data.loader import LoaderBatches
from cnnlab.errors import CheckpointError, ConfigError, TrainingDivergedError
from cnnlab.models import get_model

Callback = Callable[[dict], None]


@dataclass
class TrainConfig:
    """Everything that decides a training run; config.json is this, resolved."""

    model: str = "cnn"  # the recommended small BatchNorm CNN (see `cnnlab models`)
    model_kwargs: dict = field(default_factory=dict)  # builder options, e.g. {"width": 32}
    dataset: str = "mnist"  # or fashion-mnist, imagefolder:PATH
    epochs: int = 3  # cnn reaches 99.45 % on MNIST in 3 (seeds 0, 1) with these settings
    batch_size: int = 128  # big enough to keep 2 CPU cores busy, small enough for 469 steps/epoch
    # (the global batch: under torchrun each of N processes takes batch_size / N of it)
    lr: float = 0.01  # the onecycle peak; cnn: 99.46 % vs 99.26 % at 0.005 (BatchNorm copes)
    optimizer: str = "adam"  # adam needs no tuning of momentum; sgd wants lr ~0.05
    adam_betas: tuple[float, float] = (0.9, 0.999)  # torch's; the fast recipe's (0.7, 0.9)
    # forget old gradients sooner, which a one-epoch run needs (+0.24 % at 1 epoch, E12)
    schedule: str = "onecycle"  # warm up then anneal: most accuracy per epoch (Smith 2018)
    cycle_momentum: bool = True  # onecycle also cycles momentum (Adam's beta1) 0.95-0.85-0.95;
    # off keeps adam_betas as set (the fast recipe's beta1 0.7: 99.08 % vs 98.92 % cycled)
    weight_decay: float = 0.0  # small models on MNIST barely overfit in a few epochs
    label_smoothing: float = 0.0  # helps long runs a little; off keeps the loss interpretable
    augment: bool = False  # +-2 px shifts: worth it only for runs of many epochs (resnet)
    rotate: float = 0.0  # with augment: also rotate by up to +-N degrees
    scale: float = 0.0  # with augment: also scale by 1 +- N (0.1: x0.9..x1.1)
    normalize: bool = True  # inputs standardised by the dataset's mean/std; False: the
    # lesson's ToTensor inputs in [0, 1] (with them its one-channel CNN dies on some seeds)
    seed: int = 0  # same seed, same data order, same weights: runs are reproducible
    device: str = "auto"  # cuda, then mps, then cpu
    threads: int | None = None  # None keeps torch's default (one per core)
    train_subset: int | None = None  # first N training images: quick runs and tests
    test_subset: int | None = None  # first N test images
    channels_last: bool = True  # NHWC: cnn trains 1.4x faster on an AVX2 CPU; no effect on MLPs
    bf16: bool = False  # autocast to bfloat16 on CUDA or CPUs with AVX512-BF16; else ignored
    tta: int = 0  # test-time augmentation: also average over N one-pixel shifts (0-8) of each
    # test image; costs N extra forward passes, adds ~0.05-0.1 % (E05-E12). Used for the last
    # epoch's evaluation (and eval/predict); earlier epochs are evaluated plainly, which is
    # cheaper and keeps the curves comparable (metrics.json rows say which: "tta")
    data_root: str | None = None  # None: $CNNLAB_DATA or ~/.cache/cnnlab
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics of the global batch
    cuda_graphs: bool = True  # on CUDA, one process, adam/adamw: replay each full-batch step as
    # one recorded CUDA graph instead of ~100 kernel launches (small nets are launch-bound)

    def __post_init__(self):
        if isinstance(self.adam_betas, list):  # config.json stores the tuple as a list
            self.adam_betas = tuple(self.adam_betas)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad setting and its fix."""
        kwargs = self.model_kwargs
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise ConfigError(f"model_kwargs must be a dict of options, not {self.model_kwargs!r:.60}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose {', '.join(SCHEDULES)}")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r}; choose auto, cpu, cuda or mps")
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, not {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, not {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, not {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, not {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), not "
                                            f"{self.label_smoothing}"),
            (self.threads is None or self.threads >= 1, f"threads must be >= 1, not {self.threads}"),
            (len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
             f"adam betas must be two numbers in [0, 1), not {self.adam_betas}"),
            (0 <= self.tta <= len(TTA_SHIFTS), f"tta must be 0..{len(TTA_SHIFTS)}, not {self.tta}"),
            (0 <= self.rotate <= 180, f"rotate must be 0..180 degrees, not {self.rotate}"),
            (0 <= self.scale < 1, f"scale must be in [0, 1), not {self.scale}"),
            (self.train_subset is None or self.train_subset >= 1, "train subset must be >= 1"),
            (self.test_subset is None or self.test_subset >= 1, "test subset must be >= 1"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Rebuild from config.json, refusing unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**d)


# Named starting points for `cnnlab train --recipe NAME`; explicit flags override them.
# The lesson's settings (Adam lr 0.01, batch 64) with the learning rate as the peak of a
# one-cycle schedule: its warm-up keeps the first steps small, which is what kills the lesson's
# one-channel CNN at a constant 0.01 (see cnnlab.collapse), and its annealing adds accuracy.
# The lesson's loop exactly: add --schedule constant (and --no-normalize for lesson-cnn).
RECIPES: dict[str, dict] = {
    # the lesson's [0, 1] inputs: 97.64 % median of seeds 0-4, vs 97.39 % standardised (0-2)
    "lesson-mlp": dict(model="mlp", optimizer="adam", lr=0.01, batch_size=64, epochs=2,
                       schedule="onecycle", normalize=False),
    "lesson-cnn": dict(model="lesson-cnn", optimizer="adam", lr=0.01, batch_size=64, epochs=5,
                       schedule="onecycle"),
    # issue 7, the shortest path to 99 % on a CPU, one epoch (benchmarks/BENCHMARKS.md). Batch
    # 256 with a 0.03 onecycle peak, label smoothing (+0.2 %, E05), channels_last (2.5x faster
    # convolutions than NCHW on CPU, E01). A frozen whitening stem of 12 filters: 25 % less
    # time a step than a learned conv1, the same accuracy with its 12 filters (8 seeds: 99.05 %
    # vs 99.04 %, E23), 99.13 % with 4-shift test-time augmentation (evaluation, not
    # training time). All cores; on a machine shared with other work use --threads 1 (a
    # second OpenMP thread then waits for a descheduled partner at every op: 1.5-10x slower, E08).
    "fast": dict(model="fast", model_kwargs={"stem": "whiten", "widths": [12, 24, 64]}, epochs=1,
                 batch_size=256, lr=0.03, adam_betas=(0.7, 0.9), cycle_momentum=False,
                 label_smoothing=0.1, optimizer="adam", schedule="onecycle", channels_last=True,
                 tta=4),
    # issue 7, the most accurate single model in <= 10 minutes of a 2-core CPU with AVX512-BF16
    # (20 epochs of ~22 s; without bf16 hardware it is ~2x slower): the BatchNorm cnn at width
    # 32 with bf16 autocast, +-2 px shifts, +-10 degree rotations and x0.9-1.1 scaling, AdamW
    # with weight decay 0.05, label smoothing and 8-shift test-time augmentation. Screened on a
    # GPU (E20): width 32 with rotations 99.75 % (3 seeds, 16 epochs) against 99.73 % for the
    # width-16 recipe that fitted a 2-core AVX2 CPU's 10 minutes; Fashion-MNIST width 32 94.6 %
    "best": dict(model="cnn", model_kwargs={"width": 32}, epochs=20, batch_size=128, lr=0.005,
                 augment=True, rotate=10.0, scale=0.1, label_smoothing=0.1, optimizer="adamw",
                 weight_decay=0.05, schedule="onecycle", channels_last=True, bf16=True, tta=8),
}  # fmt: skip

# One-pixel shifts for test-time augmentation, most useful first (TrainConfig.tta takes a prefix).
TTA_SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1))

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params, lr, wd, betas: torch.optim.Adam(params, lr=lr, weight_decay=wd,
                                                           betas=tuple(betas)),
    "adamw": lambda params, lr, wd, betas: torch.optim.AdamW(params, lr=lr, weight_decay=wd,
                                                             betas=tuple(betas)),
    "sgd": lambda params, lr, wd, betas: torch.optim.SGD(params, lr=lr, momentum=0.9,
                                                         nesterov=True, weight_decay=wd),
}  # fmt: skip

# optimisers whose step can be recorded in a CUDA graph (a device step counter, a tensor lr)
CAPTURABLE_OPTIMIZERS = ("adam", "adamw")

# schedule name -> builder(optimizer, peak lr, total steps, cycle momentum); stepped once per batch
SCHEDULES: dict[str, Callable[..., torch.optim.lr_scheduler.LRScheduler | None]] = {
    "constant": lambda opt, lr, steps, cycle: None,
    "onecycle": lambda opt, lr, steps, cycle: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=steps, pct_start=0.25, cycle_momentum=cycle
    ),
    "cosine": lambda opt, lr, steps, cycle: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps),
}


def make_config(recipe: str | None = None, **overrides) -> TrainConfig:
    """A TrainConfig from a recipe's settings, then `overrides` (None values are ignored)."""
    settings: dict = {}
    if recipe is not None:
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
        settings.update(copy.deepcopy(RECIPES[recipe]))  # configs never share a recipe's dicts
    settings.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig.from_dict(settings)
    config.validate()
    return config


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
    """Ctrl-C during fit: the last completed epoch is saved and can be resumed."""

    def __init__(self, out_dir: Path | None, epochs_done: int):
        super().__init__(f"interrupted after {epochs_done} epoch(s)")
        self.out_dir, self.epochs_done = out_dir, epochs_done


# --- devices and data -------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but torch sees no CUDA GPU; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps requested but this torch has no MPS; use --device cpu")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """bfloat16 autocast pays off on CUDA and on CPUs with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def input_normalisation(config: TrainConfig, info) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) applied to inputs in [0, 1]: the dataset's, or none with normalize=False."""
    if config.normalize:
        return tuple(info.mean), tuple(info.std)
    c = info.image_shape[0]
    return (0.0,) * c, (1.0,) * c


def load_batches(config: TrainConfig, device: torch.device, rank: int = 0, world_size: int = 1):
    """(train batches, test batches, DatasetInfo) for a config: this rank's shard of each."""
    from cnnlab.data.datasets import load_dataset

    train_set = load_dataset(config.dataset, "train", config.data_root)
    test_set = load_dataset(config.dataset, "test", config.data_root)
    info = train_set.info
    mean, std = input_normalisation(config, info)
    augment = Augment(rotate=config.rotate, scale=config.scale) if config.augment else None
    if config.batch_size % world_size:
        low = config.batch_size // world_size * world_size
        raise ConfigError(f"--batch-size {config.batch_size} is the global batch and must split "
                          f"evenly among {world_size} processes: use {max(low, world_size)} or "
                          f"{low + world_size}")  # fmt: skip
    per_process = config.batch_size // world_size
    common = dict(mean=mean, std=std, channels_last=config.channels_last, device=device,
                  rank=rank, world_size=world_size)  # fmt: skip
    if getattr(train_set, "in_memory", False):

        def batches(ds, n, bs, **kw):
            return InMemoryBatches(ds.images[:n], ds.targets[:n], bs, **common, **kw)

        train = batches(train_set, config.train_subset, per_process, shuffle=True,
                        seed=config.seed, augment=augment)  # fmt: skip
        test = batches(test_set, config.test_subset, 1000, even_shards=False)
    else:
        train = LoaderBatches(train_set, per_process, shuffle=True, seed=config.seed,
                              augment=augment, subset=config.train_subset, **common)  # fmt: skip
        test = LoaderBatches(test_set, 256, subset=config.test_subset, even_shards=False, **common)
    if train.num_samples < 1:
        raise ConfigError(f"{world_size} processes need at least {world_size} training images; "
                          "raise --train-subset")  # fmt: skip
    return train, test, info


# --- one epoch, evaluation, the collapse check -------------------------------------------------


def _autocast(device: torch.device, enabled: bool, cache: bool = True):
    if not enabled:
        return contextlib.nullcontext()
    # a CUDA graph must not keep autocast's cache of cast weights (stale after each step)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)


def cuda_graphs_apply(config: TrainConfig, device: torch.device, world_size: int) -> bool:
    """Whether fit records its training step as a CUDA graph (see CapturedStep)."""
    return (config.cuda_graphs and device.type == "cuda" and world_size == 1
            and config.optimizer in CAPTURABLE_OPTIMIZERS)  # fmt: skip


class CapturedStep:
    """A training step (forward, loss, backward, optimiser) recorded once and replayed.

    A small net's step on a GPU is bound by launching ~100 tiny kernels from Python, not by
    the kernels; replaying a recorded CUDA graph launches them all at once. The first
    WARMUP steps run eagerly on a side stream (capture needs warmed-up kernels and optimiser
    state; they are ordinary training steps), the next full batch is copied into static
    input tensors and recorded, and every later full batch is copied in and replayed. Short
    batches run eagerly. The optimiser's lr lives in a device tensor while the step is
    recorded, so the scheduler's per-step updates reach the replays; `close()` puts it back
    to a float for the state dict.
    """

    WARMUP = 3

    def __init__(self, model: nn.Module, optimizer, loss_fn: nn.Module, bf16: bool):
        self.model, self.optimizer, self.loss_fn, self.bf16 = model, optimizer, loss_fn, bf16
        self.device = next(model.parameters()).device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.steps = 0
        self.capturable = [g["capturable"] for g in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["capturable"] = True  # the step counters live on the device
            group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
        for state in optimizer.state.values():  # e.g. loaded from a resume state on the CPU
            if "step" in state and state["step"].device != self.device:
                state["step"] = state["step"].to(self.device, torch.float32)

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _autocast(self.device, self.bf16, cache=False):
            logits = self.model(x)
            loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return logits.detach(), loss.detach()  # let the autograd graph go

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on (x, y); returns (logits, loss), valid until the next call."""
        self.steps += 1
        if self.graph is not None and x.shape == self.x.shape and x.stride() == self.x.stride():
            self.x.copy_(x)
            self.y.copy_(y)
            self.graph.replay()
            return self.logits, self.loss
        if self.graph is not None or self.steps <= self.WARMUP:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                out = self._eager(x, y)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return out
        self.x, self.y = x.clone(memory_format=torch.preserve_format), y.clone()
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward creates them
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits, self.loss = self._eager(self.x, self.y)
        self.graph.replay()  # recording ran nothing: this is the step
        return self.logits, self.loss

    def close(self, scheduler=None) -> None:
        """Floats again for the optimiser's lr and flags (a CPU resume of the state works)."""
        for group, capturable in zip(self.optimizer.param_groups, self.capturable, strict=True):
            group["lr"] = float(group["lr"])
            group["capturable"] = capturable
        if scheduler is not None and hasattr(scheduler, "_last_lr"):
            scheduler._last_lr = [float(v) for v in scheduler._last_lr]


def _global_sums(batches, values: list, device: torch.device) -> list[float]:
    """Sums over every process when `batches` is one rank's shard; else the values."""
    if getattr(batches, "world_size", 1) == 1:
        return [float(v) for v in values]
    return distributed.sum_across_ranks(values, device)


def train_one_epoch(
    model: nn.Module,
    batches,
    optimizer: torch.optim.Optimizer,
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

    With `cuda_graph` (a CUDA model, adam/adamw) the full batches' steps are replayed from a
    recorded CUDA graph (CapturedStep): the same arithmetic, one launch per step.
    Calls `callback` with {"event": "step", ...} every `report_every` steps. Raises
    TrainingDivergedError as soon as the loss is not finite. When `batches` is one rank's shard
    of a distributed job, the numbers are the whole job's (all-reduced at each report).
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
                with _autocast(device, bf16):
                    logits = model(x)
                    loss = loss_fn(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if step % report_every == 0 or step == steps:
                g_loss, g_correct, g_seen = _global_sums(batches, [loss_sum, correct, seen], device)
                mean_loss = g_loss / g_seen
                if not math.isfinite(mean_loss):
                    raise TrainingDivergedError(
                        f"the loss became {mean_loss} at epoch {epoch + 1}, step {step}: the "
                        f"learning rate {float(optimizer.param_groups[0]['lr']):.3g} is too high; "
                        "divide --lr by 10"
                    )
                if callback:
                    elapsed = time.perf_counter() - start
                    callback({"event": "step", "epoch": epoch, "step": step, "steps": steps,
                              "advance": step - reported, "loss": mean_loss,
                              "acc": g_correct / g_seen, "images_per_s": g_seen / max(elapsed, 1e-9),
                              "lr": float(optimizer.param_groups[0]["lr"])})  # fmt: skip
                    reported = step
    finally:
        if captured is not None:
            captured.close(scheduler)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    loss_total, correct, seen = _global_sums(batches, [loss_sum, correct, seen], device)
    return {"loss": loss_total / max(seen, 1), "acc": correct / max(seen, 1), "seconds": seconds,
            "images_per_s": seen / max(seconds, 1e-9), "samples": int(seen)}  # fmt: skip


def tta_log_probs(model: nn.Module, x: torch.Tensor, shifts: int) -> torch.Tensor:
    """Log of the softmax averaged over x and its first `shifts` one-pixel shifts (TTA_SHIFTS)."""
    probs = model(x).float().softmax(1)  # (B, classes)
    for dy, dx in TTA_SHIFTS[:shifts]:
        # roll wraps one row/column around; it is background in centred images, and cheaper
        # than padding and cropping
        probs += model(torch.roll(x, (dy, dx), (2, 3))).float().softmax(1)
    return (probs / (shifts + 1)).log()


@torch.no_grad()
def evaluate(
    model: nn.Module, batches, *, loss_fn: nn.Module | None = None, bf16: bool = False,
    return_outputs: bool = False, tta: int = 0,
) -> dict:  # fmt: skip
    """Mean loss and accuracy over `batches` (eval mode); optionally the probabilities.

    With `tta` > 0 the prediction averages the softmax over each image and `tta` one-pixel
    shifts of it (loss and probabilities are those of the average).

    Returns:
        {"loss", "acc", "n"} and, with return_outputs, "probs" (N, classes) and "targets" (N,)
        as CPU tensors. When `batches` is one rank's shard, loss, acc and n are the whole job's.
    """
    if return_outputs and getattr(batches, "world_size", 1) > 1:
        raise ConfigError("evaluate(return_outputs=True) needs all the test batches, not one shard")
    model.eval()
    device = next(model.parameters()).device
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    loss_sum, correct, n = 0.0, 0, 0
    probs, targets = [], []
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with _autocast(device, bf16):
            logits = model(x) if tta == 0 else tta_log_probs(model, x, tta)
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
        if return_outputs:
            probs.append(logits.softmax(1).cpu())
            targets.append(y.cpu())
    loss_sum, correct, n = _global_sums(batches, [loss_sum, correct, n], device)
    out = {"loss": loss_sum / max(n, 1), "acc": correct / max(n, 1), "n": int(n)}
    if return_outputs:
        out["probs"] = torch.cat(probs) if probs else torch.empty(0)
        out["targets"] = torch.cat(targets) if targets else torch.empty(0, dtype=torch.long)
    return out


# --- fit -----------------------------------------------------------------------------------------

# Training images a model's `init_from_data` sees (fast's whitening stem: 512 images give
# ~74k 5x5 patches, plenty for a 25x25 covariance)
INIT_IMAGES = 512


def first_images(batches, n: int) -> torch.Tensor:
    """The first `n` (or all) images of epoch 0 of `batches`, as one tensor."""
    batches.set_epoch(0)
    taken, count = [], 0
    for x, _ in batches:
        taken.append(x)
        count += len(x)
        if count >= n:
            break
    return torch.cat(taken)[:n]


# Settings a resumed run may change; every other one must match the saved config.
RESUME_MAY_CHANGE = ("epochs", "device", "threads", "data_root", "cuda_graphs")


def resume_config(run_dir: str | Path, **overrides) -> TrainConfig:
    """The saved config of a run folder with `overrides` (None values ignored) applied."""
    saved = runs.load_resume_state(run_dir).get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{run_dir}: its resume state has no config; start a new run")
    config = TrainConfig.from_dict({**saved, **{k: v for k, v in overrides.items() if v is not None}})
    try:
        config.validate()
    except TypeError as e:  # a value of the wrong type in an edited resume state
        raise CheckpointError(f"{run_dir}: its saved config is invalid ({e}); start a new run") from None
    return config


def _check_resumable(saved: TrainConfig, config: TrainConfig, run_dir) -> None:
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


@contextlib.contextmanager
def _sigint_deferred():
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


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_epoch(out_dir: Path, model, optimizer, scheduler, config, metrics, meta) -> None:
    """Weights, metrics, curves and the resume pair of the epoch just finished."""
    from cnnlab.plots import training_curves

    with _sigint_deferred(), _disk_errors(out_dir, len(metrics)):
        runs.save_weights(out_dir / runs.WEIGHTS, model, dict(meta, epochs_done=len(metrics)))
        runs.write_json(out_dir / runs.METRICS, metrics)
        runs.save_resume_state(out_dir, {
            "epoch": len(metrics), "config": asdict(config), "metrics": metrics,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": _rng_state(),
        })  # fmt: skip
    if metrics:
        with _disk_errors(out_dir, len(metrics)):
            training_curves(metrics, out_dir / runs.CURVES, title=f"{config.model} on {config.dataset}")


@contextlib.contextmanager
def _disk_errors(out_dir: Path, epoch: int):
    """A failed write (disk full, file too large, read-only) -> one CheckpointError line.

    Every file is replaced atomically, so those already in the folder are still whole.
    """
    try:
        yield
    except OSError as e:
        raise CheckpointError(
            f"{out_dir}: cannot save epoch {epoch} ({e.strerror or e}); the files already there "
            f"are intact: free some space and continue with `cnnlab train --resume {out_dir}`"
        ) from None


def fit(
    config: TrainConfig,
    out_dir: str | Path | None = None,
    callback: Callback | None = None,
    resume_from: str | Path | None = None,
) -> FitResult:
    """Train `config.model` on `config.dataset`; write the run folder when out_dir is given.

    Args:
        config: the run's settings (see TrainConfig).
        out_dir: run folder to write (model.safetensors, metrics.json, config.json, curves.png,
            resume pair at each epoch end); None trains in memory only.
        callback: receives progress dicts: {"event": "start" | "epoch_start" | "step" |
            "epoch_end" | "warning" | "interrupted", ...}.
        resume_from: a run folder to continue (its resume pair); out_dir defaults to it.

    Under torchrun every process calls fit with the same arguments: it joins the process group
    (if the caller has not), trains its shard with DistributedDataParallel, and only rank 0
    writes out_dir and gets callbacks; the metrics are the whole job's on every rank.

    Raises:
        TrainingDivergedError: NaN loss, or still at chance after the first epoch.
        TrainingInterrupted: Ctrl-C; the last completed epoch is saved for `resume_from`.
        ConfigError, DatasetNotFoundError, CheckpointError: bad settings, data or run folder.
    """
    config.validate()
    if not distributed.is_main_process():
        callback = None  # rank 0 reports for the whole job
    emit = callback or (lambda event: None)
    state = None
    if resume_from is not None:
        state = runs.load_resume_state(resume_from)
        saved = TrainConfig.from_dict(state["config"])
        _check_resumable(saved, config, resume_from)
        out_dir = out_dir if out_dir is not None else resume_from
    out_dir = Path(out_dir) if out_dir is not None else None
    if config.threads:
        torch.set_num_threads(config.threads)
    ctx = distributed.setup(resolve_device(config.device))  # one process outside torchrun
    device, writes = ctx.device, out_dir is not None and ctx.is_main
    bf16 = config.bf16 and bf16_supported(device)
    if config.bf16 and not bf16:
        emit({"event": "warning", "message": f"bf16 ignored: {device.type} here has no fast "
              "bfloat16 (needs CUDA or a CPU with AVX512-BF16); training in float32"})  # fmt: skip

    torch.manual_seed(config.seed)  # the initial weights and dropout masks
    with distributed.local_main_first(ctx):  # one process per machine fetches the files
        train_batches, test_batches, info = load_batches(config, device, ctx.rank, ctx.world_size)
    model = get_model(config.model, info.image_shape, info.num_classes, **config.model_kwargs)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    init_s = 0.0
    if state is None and hasattr(model, "init_from_data"):  # e.g. fast's whitening stem
        # before DDP wraps the model, so every rank starts from rank 0's result; timed as training
        t0 = time.perf_counter()
        model.init_from_data(first_images(train_batches, INIT_IMAGES))
        init_s = time.perf_counter() - t0
    train_model = distributed.wrap_model(model, ctx, sync_bn=config.sync_bn)  # DDP under torchrun
    model = distributed.unwrap(train_model)  # the plain model: evaluated and saved
    optimizer = OPTIMIZERS[config.optimizer](
        model.parameters(), config.lr, config.weight_decay, config.adam_betas
    )
    scheduler = SCHEDULES[config.schedule](
        optimizer, config.lr, config.epochs * len(train_batches), config.cycle_momentum
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    mean, std = input_normalisation(config, info)
    meta = runs.run_metadata(config.model, config.model_kwargs, info, {"mean": mean, "std": std})
    graphs = cuda_graphs_apply(config, device, ctx.world_size)

    metrics: list[dict] = []
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            metrics = list(state["metrics"])
            _set_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # an edited resume state
            raise CheckpointError(
                f"{resume_from}: its resume state does not fit {config.model} ({type(e).__name__}: "
                f"{str(e)[:200]}); start a new run"
            ) from None
    if writes:
        runs.remove_stale_parts(out_dir)  # left by a killed run; this process is the writer now
        with _disk_errors(out_dir, len(metrics)):
            runs.write_json(out_dir / runs.CONFIG, asdict(config))
        if state is None:  # epoch 0: a Ctrl-C in the first epoch still leaves a resumable run
            _save_epoch(out_dir, model, optimizer, scheduler, config, metrics, meta)
    probe = next(iter(test_batches))[0][:256]  # images for the dead-ReLU diagnosis
    emit({"event": "start", "config": asdict(config), "device": str(device), "bf16": bf16,
          "cuda_graphs": graphs,
          "train_samples": train_batches.num_samples * ctx.world_size, "steps": len(train_batches),
          "start_epoch": len(metrics), "out_dir": out_dir, "processes": ctx.world_size})  # fmt: skip
    train_seconds = sum(m["seconds"] for m in metrics)
    saved = len(metrics)  # epochs on disk: what a resume continues from
    try:
        for epoch in range(len(metrics), config.epochs):
            emit({"event": "epoch_start", "epoch": epoch, "epochs": config.epochs,
                  "steps": len(train_batches)})  # fmt: skip
            train_batches.set_epoch(epoch)
            if ctx.rank:  # ranks > 0: dropout masks of their own, replayable from (seed, epoch)
                torch.manual_seed(distributed.rank_seed(config.seed, epoch, ctx.rank))
            tr = train_one_epoch(train_model, train_batches, optimizer, loss_fn, scheduler=scheduler,
                                 bf16=bf16, callback=callback, epoch=epoch,
                                 cuda_graph=graphs)  # fmt: skip
            distributed.broadcast_buffers(model, ctx)  # every rank evaluates rank 0's model
            tta = config.tta if epoch == config.epochs - 1 else 0  # TTA for the final figure
            te = evaluate(model, test_batches, bf16=bf16, tta=tta)
            tr["seconds"] += init_s if epoch == 0 else 0.0  # the data-derived init is training
            train_seconds += tr["seconds"]
            row = {"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"],
                   "test_loss": te["loss"], "test_acc": te["acc"], "seconds": tr["seconds"],
                   "images_per_s": tr["images_per_s"], "lr": optimizer.param_groups[0]["lr"],
                   "tta": tta}  # fmt: skip
            metrics.append(row)
            with _sigint_deferred():  # a Ctrl-C during the save is counted after it
                if writes:
                    _save_epoch(out_dir, model, optimizer, scheduler, config, metrics, meta)
                saved = len(metrics)
            emit({"event": "epoch_end", "epochs": config.epochs, **row})  # after the save
            if epoch == 0:
                check_collapse(config, row, info.num_classes, model, probe)
    except KeyboardInterrupt:
        emit({"event": "interrupted", "epochs_done": saved, "out_dir": out_dir})
        raise TrainingInterrupted(out_dir, saved) from None
    model.eval()
    return FitResult(model=model, config=config, metrics=metrics, info=info, out_dir=out_dir,
                     train_seconds=train_seconds)  # fmt: skip
