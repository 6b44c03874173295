"""A layer-by-layer summary of a real model: output shapes, parameters, MACs, Linear sizes.

`summarize(model, (1, 28, 28))` runs one zero batch through the model with hooks on every leaf
module and records what each one produced. Functional calls in `forward` (F.relu, x.reshape,
torch.flatten) are not modules, so they get no row, but their effect shows in the next row.

Its main job is the error everyone meets when they change a CNN: "mat1 and mat2 shapes cannot
be multiplied". A forward pre-hook on every nn.Linear sees the input before the matmul, so the
summary says which Linear is wrong, what its in_features is and what it should be, and then
carries on with a correctly sized zero input to check the layers after it too.

This module needs torch (cnnlab.shapes does not). It sits beside shapes at the bottom of the
import graph: models may use `flatten_features` to size their first Linear.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.layer_shapes import DEFAULT_BATCH, check_spatial, walk_shapes


@dataclass(frozen=True)
class LayerInfo:
    """One call of one leaf module.

    Attributes:
        name: its dotted name in the model ("features.0", "conv1").
        type: its class name ("Conv2d").
        input_shape: the shape that arrived, batch first.
        output_shape: the shape it produced, batch first.
        params: its parameters (0 when the module was already counted in an earlier call).
        macs: multiply-accumulates per image (conv and linear layers; 0 for the others).
        in_features: for a Linear, the in_features it has.
        needs: for a Linear, the features per image that actually arrive.
    """

    name: str
    type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    in_features: int | None = None
    needs: int | None = None


@dataclass(frozen=True)
class LinearMismatch:
    """A Linear whose in_features does not match what arrives."""

    name: str
    has: int
    needs: int
    arrived: tuple[int, ...]
    batch: int
    after: str | None
    after_shape: tuple[int, ...] | None

    def message(self) -> str:
        """One sentence: the layer, what it has, what it should have, and why."""
        shape = format_shape(self.arrived, self.batch)
        if self.needs == self.has:  # the size is right, the layout is not
            text = f"{self.name} (Linear) receives {shape}: {self.needs} features per image, unflattened"
        else:
            text = (
                f"{self.name} (Linear) has in_features={self.has} but each image brings "
                f"{self.needs} features"
            )
        if self.after is not None and self.after_shape is not None:
            text += f" (after {self.after}, output {format_shape(self.after_shape, self.batch)})"
        if len(self.arrived) == 2 and self.arrived[0] != self.batch:
            text += (
                f"; it received {shape} from a batch of {self.batch}: a reshape "
                f"folded each image into {self.arrived[0] // self.batch} rows"
            )
        elif len(self.arrived) > 2 and self.needs != self.has:
            text += f"; it received {shape} unflattened"
        fix = "" if self.needs == self.has else f"make it nn.Linear({self.needs}, ...) and "
        return f"{text}; {fix}flatten with x.flatten(1) or nn.Flatten()"


@dataclass
class Summary:
    """What `summarize` found.

    Attributes:
        model: the model's class name.
        input_shape: the shape of one input image, e.g. (1, 28, 28).
        batch: the batch size of the zero batch.
        layers: one `LayerInfo` per leaf-module call, in call order.
        output_shape: the model's output shape (batch first), None if it did not finish.
        total_params, trainable_params: over the whole model.
        mismatches: Linear layers whose in_features is wrong.
    """

    model: str
    input_shape: tuple[int, ...]
    batch: int
    layers: list[LayerInfo] = field(default_factory=list)
    output_shape: tuple[int, ...] | None = None
    total_params: int = 0
    trainable_params: int = 0
    mismatches: list[LinearMismatch] = field(default_factory=list)

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates per image over all rows."""
        return sum(layer.macs for layer in self.layers)

    @property
    def ok(self) -> bool:
        """True when every Linear gets the in_features it has."""
        return not self.mismatches

    def linear_needs(self) -> list[tuple[str, int, int]]:
        """(name, in_features it has, in_features it needs) for each Linear call."""
        return [
            (r.name, r.in_features, r.needs)
            for r in self.layers
            if r.in_features is not None and r.needs is not None
        ]

    def check(self) -> None:
        """Raise ShapeError naming every mismatched Linear; do nothing when all fit."""
        if self.mismatches:
            raise ShapeError(f"{self.model}: " + "; also ".join(m.message() for m in self.mismatches))


def format_shape(shape: Sequence[int], batch: int) -> str:
    """(2, 16, 4, 4) with batch 2 -> '(B, 16, 4, 4)'."""
    dims = list(shape)
    if dims and dims[0] == batch:
        return "(" + ", ".join(["B"] + [str(d) for d in dims[1:]]) + ")"
    return "(" + ", ".join(str(d) for d in dims) + ")"


def _first_tensor(value) -> torch.Tensor | None:
    """The tensor a module returned (or the first of a tuple/list of them)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, list | tuple):
        for v in value:
            if isinstance(v, torch.Tensor):
                return v
    return None


def _macs(module: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> int:
    """Multiply-accumulates per image of conv and linear layers; 0 for everything else."""
    if isinstance(module, nn.modules.conv._ConvNd):
        k = math.prod(module.kernel_size)
        if module.transposed:  # each input value is spread over out_channels/groups kernels
            return x.numel() // batch * (module.out_channels // module.groups) * k
        return y.numel() // batch * (module.in_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        return y.numel() // batch * module.in_features
    return 0


class _Recorder:
    """The hooks and what they saw during one forward pass."""

    def __init__(self, model: nn.Module, batch: int):
        self.batch = batch
        self.names = {
            m: (name or type(model).__name__)
            for name, m in model.named_modules()
            if not any(True for _ in m.children())
        }
        self.layers: list[LayerInfo] = []
        self.mismatches: list[LinearMismatch] = []
        self.counted: set[int] = set()
        self.inputs: dict[int, tuple[tuple[int, ...], int | None]] = {}  # shape, needs

    def attach(self) -> list:
        """Register a pre-hook and a hook on every leaf; return the handles."""
        handles = []
        for m in self.names:
            handles.append(m.register_forward_pre_hook(self.pre_hook))
            handles.append(m.register_forward_hook(self.hook))
        return handles

    def pre_hook(self, module: nn.Module, args):
        """Check the input; for a wrong Linear, record it and hand on a zero input that fits."""
        x = _first_tensor(args)
        if x is None:
            return None
        name = self.names[module]
        self.inputs[id(module)] = (tuple(x.shape), None)
        check_spatial(name, module, tuple(x.shape))
        if not isinstance(module, nn.Linear) or x.ndim < 2:
            return None
        b, has = self.batch, module.in_features
        if x.ndim > 2 and x.shape[-1] == has:  # a Linear over the last dimension, as for (B, T, D)
            self.inputs[id(module)] = (tuple(x.shape), has)
            return None
        # what one image brings once flattened (x.numel() // b also undoes a folded batch)
        needs = x.numel() // b if x.numel() % b == 0 else x.shape[-1]
        self.inputs[id(module)] = (tuple(x.shape), needs)
        if x.ndim == 2 and x.shape[0] == b and needs == has:
            return None
        last = self.layers[-1] if self.layers else None
        self.mismatches.append(
            LinearMismatch(
                name,
                has,
                needs,
                tuple(x.shape),
                b,
                last.name if last else None,
                last.output_shape if last else None,
            )
        )
        return (x.new_zeros((b, has)),) + tuple(args[1:])

    def hook(self, module: nn.Module, args, output) -> None:
        """Record the row for one call (args are what the pre-hook handed on)."""
        x, y = _first_tensor(args), _first_tensor(output)
        if x is None or y is None:
            return
        params = 0
        if id(module) not in self.counted:  # a module called twice is counted once
            self.counted.add(id(module))
            params = sum(p.numel() for p in module.parameters())
        arrived, needs = self.inputs.get(id(module), (tuple(x.shape), None))
        self.layers.append(
            LayerInfo(
                self.names[module],
                type(module).__name__,
                arrived,
                tuple(y.shape),
                params,
                _macs(module, x, y, self.batch),
                module.in_features if isinstance(module, nn.Linear) else None,
                needs,
            )
        )


def summarize(model: nn.Module, input_shape: Sequence[int], batch: int = DEFAULT_BATCH) -> Summary:
    """Run a zero batch through `model` and describe every leaf layer.

    Args:
        model: any nn.Module; it is put in eval mode for the pass and then restored.
        input_shape: the shape of one input, e.g. (1, 28, 28) for MNIST.
        batch: the batch size of the zero batch (keep it >= 2 to catch folded reshapes).

    Returns:
        A `Summary`. When a Linear's in_features is wrong, `summary.mismatches` names it and
        `summary.check()` raises; the pass goes on with a zero input of the right size.

    Raises:
        ShapeError: a bad input shape, a conv or pooling layer that cannot take what arrives
            (naming the layer), or any other failure of the forward pass (one line, naming the
            last layer that worked).
    """
    shape = tuple(input_shape)
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ShapeError(f"input shape {shape} must be one or more positive ints, like (1, 28, 28)")
    if batch < 1:
        raise ShapeError(f"batch {batch} must be >= 1")
    first = next(model.parameters(), None)
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    device = first.device if first is not None else torch.device("cpu")
    x = torch.zeros((batch, *shape), dtype=dtype, device=device)

    rec = _Recorder(model, batch)
    summary = Summary(type(model).__name__, shape, batch)
    handles = rec.attach()
    was_training = model.training
    model.eval()  # batch norm and dropout must not use or change anything during the pass
    try:
        with torch.no_grad():
            y = _first_tensor(model(x))
        summary.output_shape = tuple(y.shape) if y is not None else None
    except ShapeError:
        raise
    except Exception as e:  # torch raises many types; one line naming the layer is the point
        if not rec.mismatches:  # otherwise the failure is most likely a consequence of those
            last = rec.layers[-1] if rec.layers else None
            where = (
                f"after {last.name} (output {format_shape(last.output_shape, batch)})"
                if last
                else "before any layer ran"
            )
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ShapeError(
                f"{summary.model} on input {format_shape((batch, *shape), batch)} failed {where}: {msg}"
            ) from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    summary.layers = rec.layers
    summary.mismatches = rec.mismatches
    summary.total_params = sum(p.numel() for p in model.parameters())
    summary.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return summary


def flatten_features(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Features per image that `module` outputs: the in_features of the Linear after it.

    Use it instead of a hand-computed `nn.Linear(16 * 4 * 4, ...)`. Sized by `layer_shapes`
    where it can (no forward pass, so also on the meta device), else by `summarize`.

    Raises:
        ShapeError: the module cannot take that input (see `summarize`).
    """
    walked = walk_shapes(module, input_shape, DEFAULT_BATCH)
    if walked is not None:
        return math.prod(walked[1][1:])
    summary = summarize(module, input_shape)
    summary.check()
    if summary.output_shape is None:
        raise ShapeError(f"{summary.model} returned no tensor for input {tuple(input_shape)}")
    return math.prod(summary.output_shape[1:])
