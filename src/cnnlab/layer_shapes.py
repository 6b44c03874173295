"""Output shapes of a model's layers by arithmetic alone: no forward pass, no memory, any device.

`layer_shapes(model, (1, 28, 28))` gives the rows (name, output shape) that `cnnlab.summary`
finds by running a zero batch, for models built of the usual layers; None for anything else,
so the caller can fall back to the real pass. Running no ops matters on the meta device, where
PyTorch's Python decompositions would import torch._dynamo just to size a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.shapes import Output2d, conv2d_output, pool2d_output

DEFAULT_BATCH = 2  # 2, not 1: a reshape that folds features into the batch shows up as 2 != N


def check_spatial(name: str, module: nn.Module, shape: tuple[int, ...]) -> Output2d | None:
    """Conv2d / pooling: raise our ShapeError (with the layer name) where torch would fail."""
    try:
        if isinstance(module, nn.Conv2d):
            lazy = (
                isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params()
            )
            if len(shape) >= 3 and not lazy and shape[-3] != module.in_channels:
                raise ShapeError(
                    f"has in_channels={module.in_channels} but receives "
                    f"{shape[-3]} channels; make it nn.Conv2d({shape[-3]}, ...)"
                )
            if len(shape) >= 2:
                return conv2d_output(
                    shape[-2:], module.kernel_size, module.stride, module.padding, module.dilation
                )
        elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d) and len(shape) >= 2:
            return pool2d_output(
                shape[-2:],
                module.kernel_size,
                module.stride or None,
                module.padding,
                getattr(module, "dilation", 1),
                module.ceil_mode,
            )
    except ShapeError as e:
        raise ShapeError(f"{name} ({type(module).__name__}) on input {shape}: {e}") from None
    return None


# layers whose output has the shape of their input (exact types: a subclass may reshape)
_SAME_SHAPE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Dropout, nn.Identity)
_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class _Unknown(Exception):
    """A layer that `layer_shapes` cannot size by arithmetic."""


def layer_shapes(
    module: nn.Module, input_shape: Sequence[int], batch: int = DEFAULT_BATCH
) -> list[tuple[str, tuple[int, ...]]] | None:
    """`summarize`'s rows (name, output shape) by arithmetic: no forward pass, no memory.

    It knows nn.Sequential stacks of Conv2d, pooling, BatchNorm2d, activations, Dropout,
    Flatten and Linear, and modules whose class lists the paths of its forward in
    `shape_paths`: child names run in order from the module's input, every path ending in the
    same shape (a residual block: `(("conv1", "bn1", "conv2", "bn2"), ("shortcut",))`).

    Returns:
        One (dotted name, output shape batch first) per leaf layer in call order, or None
        when a layer is outside that list or does not fit its input (`summarize` says why).

    Raises:
        ShapeError: a conv or pooling layer cannot take what arrives (as `summarize` says it).
    """
    walked = walk_shapes(module, input_shape, batch)
    return walked[0] if walked is not None else None


def walk_shapes(
    module: nn.Module, input_shape: Sequence[int], batch: int = DEFAULT_BATCH
) -> tuple[list[tuple[str, tuple[int, ...]]], tuple[int, ...]] | None:
    """`layer_shapes` and the module's output shape (batch first), or None."""
    shape = tuple(input_shape)
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape) or batch < 1:
        return None
    rows: list[tuple[str, tuple[int, ...]]] = []
    try:
        return rows, _walk(module, "", (batch, *shape), rows)
    except _Unknown:
        return None


def _walk(module: nn.Module, name: str, shape: tuple[int, ...], rows: list) -> tuple[int, ...]:
    """Append the rows of `module` on an input of `shape`; return its output shape."""
    children = dict(module.named_children())
    if not children:  # a leaf, as summarize counts them: an empty Sequential is one too
        out = shape if type(module) is nn.Sequential else _leaf(module, name, shape)
        rows.append((name or type(module).__name__, out))
        return out
    if type(module) is nn.Sequential:
        paths: Sequence[Sequence[str]] = [list(children)]
    elif getattr(type(module), "shape_paths", None) is not None:
        paths = type(module).shape_paths
    else:  # a forward we cannot read
        raise _Unknown
    outs = set()
    for path in paths:
        out = shape
        for child in path:
            out = _walk(children[child], f"{name}.{child}" if name else child, out, rows)
        outs.add(out)
    if len(outs) != 1:
        raise _Unknown
    return outs.pop()


def _leaf(module: nn.Module, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of one leaf layer, else _Unknown."""
    kind = type(module)
    if kind in _SAME_SHAPE:
        return shape
    if kind is nn.Linear and shape[-1] == module.in_features:
        return (*shape[:-1], module.out_features)
    if kind is nn.Flatten:
        dims = (module.start_dim, module.end_dim)
        if not all(-len(shape) <= d < len(shape) for d in dims):
            raise _Unknown
        start, end = (d % len(shape) for d in dims)
        if start > end:
            raise _Unknown
        return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])
    if len(shape) != 4:
        raise _Unknown
    if kind is nn.BatchNorm2d and shape[1] == module.num_features:
        return shape
    if kind in _ADAPTIVE and not getattr(module, "return_indices", False):
        size = module.output_size
        size = (size, size) if isinstance(size, int) or size is None else tuple(size)
        return (*shape[:2], *(n if o is None else o for o, n in zip(size, shape[2:], strict=True)))
    spatial = (kind is nn.Conv2d and module.padding_mode == "zeros") or (
        kind in (nn.MaxPool2d, nn.AvgPool2d) and not getattr(module, "return_indices", False)
    )
    if not spatial:
        raise _Unknown
    out = check_spatial(name or kind.__name__, module, shape)
    channels = module.out_channels if kind is nn.Conv2d else shape[1]
    return (shape[0], channels, *out.size)
