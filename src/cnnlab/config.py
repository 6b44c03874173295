"""TrainConfig, the named recipes and `make_config`: everything that decides a training run.

Torch-free on purpose: the command line builds its `train`/`compare`/`bench` flags from these
fields (`cnnlab.cli.config_flags`), and `cnnlab --help` must not wait for torch. Each field's
help text lives in its metadata, so the flag, its default and its help have one source.
"""

from __future__ import annotations

import copy
import functools
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields

from cnnlab.errors import ConfigError

# Names of the optimiser and schedule tables in cnnlab.train (tested to match).
OPTIMIZER_NAMES = ("adam", "adamw", "sgd")
SCHEDULE_NAMES = ("constant", "onecycle", "cosine")
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
TTA_MAX = 8  # one-pixel shifts available to test-time augmentation
MAX_BATCH_SIZE = 65536  # beyond this a step's activations alone outgrow a laptop's memory
MAX_LR = 10.0  # far above any useful rate; larger values overflow the optimiser's arithmetic
MAX_WEIGHT_DECAY = 10.0
MAX_EPOCHS = 10_000
MAX_THREADS = 1024


def option(default, help: str, **extra):
    """A TrainConfig field with its command-line help (and flag options) in its metadata."""
    meta = {"help": help, **extra}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything that decides a training run; config.json is this, resolved."""

    model: str = option("cnn", "model name, see `cnnlab models`")
    model_kwargs: dict = option({}, "builder options as JSON, e.g. '{\"width\": 32}'", metavar="JSON")
    dataset: str = option(
        "mnist",
        "mnist, fashion-mnist, kmnist, emnist-digits, emnist-letters, qmnist, cifar10 or "
        "imagefolder:PATH",
    )
    image_size: int | None = option(
        None, "image folders: fit each image into an N x N square (default: 28)"
    )
    channels: int | None = option(None, "image folders: 1 (grey) or 3 (colour) (default: 1)")
    epochs: int = option(3, "passes over the training set")
    batch_size: int = option(
        128,
        "images per step, global: under torchrun each of N processes takes 1/N of it; when you "
        "multiply it by k, multiply --lr by k (sgd) or sqrt(k) (adam)",
    )
    lr: float = option(0.01, "(peak) learning rate")
    optimizer: str = option("adam", "optimiser", choices=OPTIMIZER_NAMES)
    adam_betas: tuple[float, float] = option(
        (0.9, 0.999), "Adam's moment decay rates", metavar=("B1", "B2")
    )
    schedule: str = option(
        "onecycle", "learning-rate schedule, stepped per batch", choices=SCHEDULE_NAMES
    )
    # onecycle cycles Adam's beta1 too; off keeps adam_betas as set (a one-epoch run wants that)
    cycle_momentum: bool = option(True, "with onecycle, also cycle the momentum (Adam's beta1)")
    weight_decay: float = option(0.0, "weight decay (decoupled with adamw)")
    label_smoothing: float = option(0.0, "cross-entropy label smoothing, 0 to 1")
    augment: bool = option(False, "random +-2 px shifts of each training image")
    rotate: float = option(0.0, "with --augment, also rotate by up to +-DEG degrees", metavar="DEG")
    scale: float = option(0.0, "with --augment, also scale by 1 +- S, e.g. 0.1", metavar="S")
    # off feeds the lesson's ToTensor inputs in [0, 1], with which its one-channel CNN can die
    normalize: bool = option(True, "standardise inputs by the dataset's mean/std")
    seed: int = option(0, "seed of the weights, the data order and the augmentation")
    device: str = option("auto", "auto = cuda, then mps, then cpu", choices=DEVICE_NAMES)
    threads: int | None = option(None, "CPU threads (default: one per core)")
    train_subset: int | None = option(None, "use the first N training images (default: all)")
    # settings are chosen on these; the test set is evaluated once, after the last epoch
    val_split: float | None = option(
        None,
        "hold out N training images (or a fraction, e.g. 0.1) as a validation split, stratified by "
        "class and seeded; each epoch reports val, the test set is evaluated once at the end "
        "(default: none: test every epoch)",
        metavar="N",
    )
    test_subset: int | None = option(None, "use the first N test images (default: all)")
    channels_last: bool = option(True, "NHWC memory layout (faster convolutions on CPUs)")
    bf16: bool | None = option(
        False,
        "bfloat16 autocast on CUDA or CPUs with AVX512-BF16 (else ignored); unset (the fast "
        "recipe): only on CUDA and CPUs with AMX, where it pays for a small net too",
    )
    # earlier epochs are evaluated plainly: cheaper, and the curves stay comparable
    tta: int = option(
        0, f"test-time augmentation at the final evaluation: N one-pixel shifts, 0-{TTA_MAX}"
    )
    data_root: str | None = option(
        None, "data root (default: $CNNLAB_DATA or ~/.cache/cnnlab)", flag="--root"
    )
    sync_bn: bool = option(False, "under torchrun on GPUs: BatchNorm statistics of the global batch")
    # small nets on a GPU are bound by kernel launches, which a recorded graph replays at once
    cuda_graphs: bool = option(
        True, "on CUDA with adam/adamw, replay each step as a recorded CUDA graph"
    )
    tensorboard: bool = option(
        False, "also write TensorBoard event files in the run folder (needs cnnlab[tensorboard])"
    )

    def __post_init__(self):
        if isinstance(self.adam_betas, list):  # config.json stores the tuple as a list
            self.adam_betas = tuple(self.adam_betas)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad setting and its fix."""
        _check_types(self)
        if not all(isinstance(k, str) for k in self.model_kwargs):
            raise ConfigError(f"model_kwargs must be a dict of options, not {self.model_kwargs!r:.60}")
        for name, choices in (("optimizer", OPTIMIZER_NAMES), ("schedule", SCHEDULE_NAMES)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; choose {', '.join(choices)}")
        if self.device not in DEVICE_NAMES and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r}; choose auto, cpu, cuda or mps")
        for ok, message in _range_checks(self):
            if not ok:
                raise ConfigError(message)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Rebuild from config.json, refusing unknown keys."""
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a JSON object of settings, not {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**d)


@functools.cache
def _hints() -> dict:
    return typing.get_type_hints(TrainConfig)


def field_type(f) -> tuple[type, bool]:
    """(the base type of a TrainConfig field, whether None is allowed)."""
    hint = _hints()[f.name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return typing.get_origin(hint) or hint, False


_TYPE_WORDS = {
    dict: "a dict of options",
    tuple: "a pair of numbers",
    float: "a number",
    int: "a whole number",
    str: "a string",
    bool: "true or false",
}


def _check_types(config: TrainConfig) -> None:
    """Each field holds its declared type (config.json and resume states are user files)."""
    for f in fields(config):
        value, (kind, optional) = getattr(config, f.name), field_type(f)
        if value is None and optional:
            continue
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is tuple:
            ok = isinstance(value, tuple) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value
            )
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise ConfigError(
                f"{f.name} must be {_TYPE_WORDS.get(kind, kind.__name__)}, not {value!r:.60}"
            )


def _finite_in(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low <= value <= high


def _range_checks(c: TrainConfig) -> list[tuple[bool, str]]:
    """(condition, message) per numeric setting."""
    return [
        (1 <= c.epochs <= MAX_EPOCHS, f"epochs must be >= 1 and <= {MAX_EPOCHS}, not {c.epochs}"),
        (
            1 <= c.batch_size <= MAX_BATCH_SIZE,
            f"batch size must be >= 1 and <= {MAX_BATCH_SIZE}, not {c.batch_size}",
        ),
        (
            c.lr > 0 and _finite_in(c.lr, 0, MAX_LR),
            f"lr must be a number in (0, {MAX_LR:g}], not {c.lr}: try 0.01 (adam) or 0.05 (sgd)",
        ),
        (
            _finite_in(c.weight_decay, 0, MAX_WEIGHT_DECAY),
            f"weight decay must be in [0, {MAX_WEIGHT_DECAY:g}], not {c.weight_decay}",
        ),
        (
            _finite_in(c.label_smoothing, 0, 0.999),
            f"label smoothing must be in [0, 1), not {c.label_smoothing}",
        ),
        (
            c.threads is None or 1 <= c.threads <= MAX_THREADS,
            f"threads must be >= 1 and <= {MAX_THREADS}, not {c.threads}",
        ),
        (
            len(c.adam_betas) == 2 and all(_finite_in(b, 0, 0.999999) for b in c.adam_betas),
            f"adam betas must be two numbers in [0, 1), not {c.adam_betas}",
        ),
        (0 <= c.tta <= TTA_MAX, f"tta must be 0..{TTA_MAX}, not {c.tta}"),
        (_finite_in(c.rotate, 0, 180), f"rotate must be 0..180 degrees, not {c.rotate}"),
        (_finite_in(c.scale, 0, 0.999), f"scale must be in [0, 1), not {c.scale}"),
        (c.train_subset is None or c.train_subset >= 1, "train subset must be >= 1"),
        (
            c.val_split is None or (math.isfinite(c.val_split) and c.val_split > 0),
            f"val split must be a count >= 1 or a fraction in (0, 1), not {c.val_split}",
        ),
        (c.test_subset is None or c.test_subset >= 1, "test subset must be >= 1"),
    ]


# Named starting points for `cnnlab train --recipe NAME`; explicit flags override them. How each
# was chosen, and what it measures, is in benchmarks/BENCHMARKS.md and benchmarks/MODELS.md.
RECIPES: dict[str, dict] = {
    # the lesson's settings, the lr as the peak of a one-cycle schedule: its warm-up keeps the
    # first steps small, which is what kills the lesson's one-channel CNN at a constant rate
    "lesson-mlp": dict(
        model="mlp",
        optimizer="adam",
        lr=0.01,
        batch_size=64,
        epochs=2,
        schedule="onecycle",
        normalize=False,
    ),
    "lesson-cnn": dict(
        model="lesson-cnn", optimizer="adam", lr=0.01, batch_size=64, epochs=5, schedule="onecycle"
    ),
    # the shortest path to 99 % on a CPU: one epoch, a frozen whitening stem (backward stops at
    # the second layer), Adam with short memories, test-time augmentation at the end; batch 384
    # ties 256 on validation in fewer steps; bf16 only where the CPU has AMX, where it ties
    # float32 in less time (research/fast_levers.py)
    "fast": dict(
        model="fast",
        model_kwargs={"stem": "whiten", "widths": [12, 24, 64]},
        epochs=1,
        batch_size=384,
        lr=0.04,
        adam_betas=(0.7, 0.9),
        cycle_momentum=False,
        label_smoothing=0.1,
        optimizer="adam",
        schedule="onecycle",
        channels_last=True,
        bf16=None,
        tta=4,
    ),
    # the most accurate single model in about ten minutes of a CPU with AVX512-BF16
    # (without bf16 hardware it trains in float32, about twice as long)
    "best": dict(
        model="cnn",
        model_kwargs={"width": 32},
        epochs=20,
        batch_size=128,
        lr=0.005,
        augment=True,
        rotate=10.0,
        scale=0.1,
        label_smoothing=0.1,
        optimizer="adamw",
        weight_decay=0.05,
        schedule="onecycle",
        channels_last=True,
        bf16=True,
        tta=8,
    ),
}

# 99.5 % in a few CPU seconds (about the published recipe's time for its 99.0 %): the `fast`
# recipe with its net widened to 24/48/128 over 4 epochs of shifted, rotated and scaled images
# (chosen on validation: research/quick_recipe.py)
RECIPES["quick"] = {
    **RECIPES["fast"],
    "model_kwargs": {"stem": "whiten", "widths": [24, 48, 128]},
    "epochs": 4,
    "batch_size": 256,
    "lr": 0.03,
    "augment": True,
    "rotate": 10.0,
    "scale": 0.1,
    "bf16": True,  # where the CPU has bf16 (else float32, with a note): faster, no worse on val
}
# The published GPU speed recipe (its net is `reference-cnn`), as published: the baseline that
# `cnnlab bench speedrun` times in the same run as the recipes above
RECIPES["reference"] = dict(
    model="reference-cnn",
    epochs=1,
    batch_size=256,
    lr=0.01,
    optimizer="adam",
    adam_betas=(0.7, 0.9),
    cycle_momentum=False,
    schedule="onecycle",
    channels_last=False,
)

# Settings a resumed run may change; every other one must match the saved config.
RESUME_MAY_CHANGE = ("epochs", "device", "threads", "data_root", "cuda_graphs", "tensorboard")


def make_config(recipe: str | None = None, settings: dict | None = None, **overrides) -> TrainConfig:
    """A TrainConfig from a recipe's settings, then a file's `settings` (taken as they are: a
    saved config.json's null is a value), then `overrides` (None values are ignored: not given).

    Raises:
        ConfigError: an unknown recipe or key, or a value out of range.
    """
    merged: dict = {}
    if recipe is not None:
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
        merged.update(copy.deepcopy(RECIPES[recipe]))  # configs never share a recipe's dicts
    merged.update(copy.deepcopy(settings or {}))
    merged.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig.from_dict(merged)
    config.validate()
    return config


def flag_name(f) -> str:
    """`--batch-size` for batch_size (or the field's own `flag`)."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def default_value(f):
    """A TrainConfig field's default (calling its factory)."""
    return f.default_factory() if f.default is MISSING else f.default


def input_normalisation(config: TrainConfig, info) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) applied to inputs in [0, 1]: the dataset's, or none with normalize=False."""
    if config.normalize:
        return tuple(info.mean), tuple(info.std)
    c = info.image_shape[0]
    return (0.0,) * c, (1.0,) * c
