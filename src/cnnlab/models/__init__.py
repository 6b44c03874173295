"""The model registry: `get_model("cnn", input_shape=(1, 28, 28), num_classes=10)`.

One file per family (mlp, lesson, cnn, fast, resnet); each registers its builders here. Every
builder takes the input shape (C, H, W) and the number of classes, checks its options
(`_options`) and sizes its first Linear with `cnnlab.summary.flatten_features` (no magic
numbers such as `nn.Linear(576, 10)`). Conv models keep their layers in named submodules
(`features`, `classifier`, `conv1`, `pool1`, ...) so that `explain` finds convolutions and
poolings through `named_modules()`. A model knows nothing of training.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.models._sizing import (
    MAX_ACTIVATION,
    MAX_BATCH_ACTIVATIONS,
    MAX_CHANNELS,
    MAX_INPUT_SIDE,
    MAX_LAYERS,
    MAX_PARAMETERS,
    MAX_WIDTH,
    activation_values,
    check_input_shape,
    check_size,
    count_macs,
    count_parameters,
    safe_batch_size,
)

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, tuple[Builder, str]] = {}


def register_model(name: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator: register `builder(input_shape, num_classes, **kwargs) -> nn.Module` as `name`."""

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ConfigError(f"model {name!r} is registered twice")
        _REGISTRY[name] = (builder, description)
        return builder

    return wrap


def list_models() -> list[str]:
    """Registered model names, in registration order (simplest first)."""
    return list(_REGISTRY)


def model_description(name: str) -> str:
    """The one-line description given at registration."""
    return _lookup(name)[1]


def _lookup(name: str) -> tuple[Builder, str]:
    """The builder and description of `name`, else ConfigError listing the choices."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def get_model(
    name: str, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, **kwargs
) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of `list_models()`.
        input_shape: (C, H, W) of one input image.
        num_classes: size of the output (logits).
        **kwargs: builder options (e.g. `hidden=(512, 256)` for mlp, `channels=(6, 1)`).

    Raises:
        ConfigError: unknown model, bad shape, an option the builder does not take, of the
            wrong type or out of range, or a model over the size limits.
        ShapeError: the input is too small for the model's convolutions and poolings.
    """
    builder, _ = _lookup(name)
    shape = check_input_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2, not {num_classes!r}")
    _check_option_names(name, builder, kwargs)
    try:
        with torch.device("meta"):  # shapes without memory: check the size first
            check_size(name, builder(shape, num_classes, **kwargs), shape)
        return builder(shape, num_classes, **kwargs)
    except ShapeError as e:  # names the layer: "conv2 (Conv2d) on input (2, 6, 2, 2): ..."
        raise ShapeError(
            f"input shape {shape} is too small for these layers ({e}); "
            "use larger images or fewer poolings"
        ) from None
    except (RuntimeError, TypeError, ValueError, OverflowError) as e:  # whatever a check missed
        raise ConfigError(f"model {name!r}: bad option ({_one_line(e)})") from None


def _check_option_names(name: str, builder: Builder, kwargs: dict) -> None:
    """ConfigError for an option the builder does not take, listing those it takes."""
    params = list(inspect.signature(builder).parameters.values())[2:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    taken = [p.name for p in params]
    unknown = sorted(set(kwargs) - set(taken), key=str)
    if unknown:
        raise ConfigError(
            f"model {name!r}: bad option {unknown[0]!r}: it takes "
            + (", ".join(taken) if taken else "no options")
        )


def _one_line(error: Exception) -> str:
    """The first line of an error's text, without PyTorch's C++ trace."""
    text = str(error).split("Exception raised from", 1)[0].strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


# The families register themselves when imported, so they come after `register_model`, and
# in this order, which is list_models' order (simplest first).
# isort: off
from cnnlab.models.mlp import MLP  # noqa: E402
from cnnlab.models.lesson import LeNet5, LessonCNN  # noqa: E402
from cnnlab.models.cnn import SmallCNN, conv_bn  # noqa: E402
from cnnlab.models.fast import FastCNN  # noqa: E402
from cnnlab.models.resnet import BasicBlock, ResNet  # noqa: E402
from cnnlab.models.reference import ReferenceCNN  # noqa: E402
# isort: on

__all__ = [
    "MAX_ACTIVATION",
    "MAX_BATCH_ACTIVATIONS",
    "activation_values",
    "safe_batch_size",
    "MAX_CHANNELS",
    "MAX_INPUT_SIDE",
    "MAX_LAYERS",
    "MAX_PARAMETERS",
    "MAX_WIDTH",
    "BasicBlock",
    "Builder",
    "FastCNN",
    "LeNet5",
    "LessonCNN",
    "MLP",
    "ResNet",
    "ReferenceCNN",
    "SmallCNN",
    "conv_bn",
    "count_macs",
    "count_parameters",
    "get_model",
    "list_models",
    "model_description",
    "register_model",
]
