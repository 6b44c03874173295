"""Sizing a model before it exists: input-shape and size limits, parameter and MAC counts.

Options come from command lines and from the metadata of weights files, so `get_model` first
builds the model on the meta device (no memory) and `check_size` refuses it when its weights
or its activations are too large: `hidden=[10**9]` must be refused, not allocated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layer_shapes import layer_shapes
from cnnlab.summary import summarize

MAX_INPUT_SIDE = 4096  # the image decoder's cap (cnnlab.data.images.MAX_PIXELS)
MAX_CHANNELS = 64
MAX_WIDTH = 4096  # channels of a conv layer, units of a hidden layer
MAX_PARAMETERS = 100_000_000  # 400 MB of float32, ~300x our resnet
MAX_ACTIVATION = 1 << 28  # elements of the largest layer output in the batch-2 shape pass (1 GiB)
MAX_LAYERS = 64  # hidden sizes of an mlp, stages x blocks of a resnet


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) as ints within the limits, else ConfigError."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError, OverflowError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"input_shape must be (C, H, W) with positive sizes, not {input_shape}")
    if shape[0] > MAX_CHANNELS or max(shape[1:]) > MAX_INPUT_SIDE:
        raise ConfigError(
            f"input_shape {shape} is over the limit of {MAX_CHANNELS} channels and "
            f"{MAX_INPUT_SIDE} pixels a side; resize the images"
        )
    return shape  # type: ignore[return-value]


def check_size(name: str, probe: nn.Module, shape: tuple[int, int, int]) -> None:
    """Refuse a model (built on the meta device) whose weights or activations are too large."""
    params = sum(p.numel() for p in probe.parameters())
    if params > MAX_PARAMETERS:
        raise ConfigError(
            f"model {name!r} with these options has {params:,} parameters, over the limit of "
            f"{MAX_PARAMETERS:,}; use smaller layers"
        )
    rows = layer_shapes(probe, shape)
    if rows is None:  # a layer outside the arithmetic: run the (meta) pass instead
        rows = [(layer.name, layer.output_shape) for layer in summarize(probe, shape).layers]
    largest = max((math.prod(out) for _, out in rows), default=0)
    if largest > MAX_ACTIVATION:
        raise ConfigError(
            f"model {name!r} on input {shape} makes a layer output of {largest:,} values, over "
            f"the limit of {MAX_ACTIVATION:,}; use smaller images or fewer channels"
        )


# Values all layer outputs of one batch may hold when a run predicts or evaluates (512 MiB of
# float32): a large declared input then gets small batches instead of gigabytes
MAX_BATCH_ACTIVATIONS = 1 << 27


def activation_values(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Values in every layer output for one image (what a forward pass holds at most)."""
    rows = layer_shapes(model, input_shape, batch=1)
    if rows is None:
        rows = [
            (layer.name, layer.output_shape) for layer in summarize(model, tuple(input_shape)).layers
        ]
        return sum(math.prod(out[1:]) if len(out) > 1 else 1 for _, out in rows)
    return sum(math.prod(out[1:]) for _, out in rows)


def safe_batch_size(model: nn.Module, input_shape: Sequence[int], wanted: int) -> int:
    """`wanted`, or fewer images so that one batch's activations stay within the budget."""
    per_image = max(1, activation_values(model, input_shape))
    return max(1, min(wanted, MAX_BATCH_ACTIVATIONS // per_image))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one image (convolutions and linear layers)."""
    return summarize(model, input_shape).total_macs
