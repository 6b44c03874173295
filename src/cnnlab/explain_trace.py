"""Every layer of a model on one input, in the order the forward pass ran them: `layer_trace`.

Each leaf module's output is recorded by a forward hook on a private copy of the model (the
caller's model is never touched), with its parameter count and, for layers whose output is a
stack of maps (C, H, W), its receptive field: which window of the model's input each output
pixel sees. The field follows the data: a layer takes the field of the tensor it received,
and a tensor made between layers by a plain function (a residual sum) takes the widest field
recorded for that map size. A last "softmax" step turns the logits into probabilities.

Receptive field, per axis, for a layer with effective kernel F' = d*(F-1)+1, stride s and
padding p before, on an input whose field is (size r, jump j, offset o):

    r' = r + (F' - 1) * j        j' = j * s        o' = o - p * j

Output pixel i then sees model-input rows o' + i*j' .. o' + i*j' + r' - 1 (clipped to the image).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.shapes import Output2d, conv2d_output, pool2d_output

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class Field:
    """The receptive field of one layer's output pixels in the model's input, per axis (h, w).

    Attributes:
        size: input pixels one output pixel sees along each axis.
        jump: input pixels between neighbouring output pixels.
        offset: the first output pixel's window starts here (negative: in the padding).
        input_size: the model input's (H, W), to clip windows to.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    offset: tuple[int, int]
    input_size: tuple[int, int]

    def windows(self, out_size: tuple[int, int]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """For each output row and column, the first and last model-input row/column it sees."""
        per_axis = []
        for a in range(2):
            n = self.input_size[a]
            starts = [self.offset[a] + i * self.jump[a] for i in range(out_size[a])]
            per_axis.append([(max(0, s), min(n - 1, s + self.size[a] - 1)) for s in starts])
        return per_axis[0], per_axis[1]

    def through(self, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int]) -> Field:
        """The field after a layer with these effective kernel spans, strides and front paddings."""
        size = tuple(self.size[a] + (kernel[a] - 1) * self.jump[a] for a in range(2))
        jump = tuple(self.jump[a] * stride[a] for a in range(2))
        offset = tuple(self.offset[a] - pad[a] * self.jump[a] for a in range(2))
        return Field(size, jump, offset, self.input_size)


@dataclass
class LayerTrace:
    """One layer's part in a forward pass.

    Attributes:
        name: the module's name in `named_modules()` ("softmax" for the last step).
        kind: "conv", "pool", "activation", "batchnorm", "flatten", "linear", "dropout",
            "softmax" or "other".
        module: the module's class name, e.g. "Conv2d".
        detail: one line, e.g. "Conv2d 1->16 3x3, stride 1, padding 1".
        input_shape: what it received, without the batch axis.
        output: what it produced for the first image of the batch (a detached copy).
        params: the numbers it holds itself (weights and biases; BatchNorm statistics excluded).
        geometry: conv/pool only: the `cnnlab.shapes.Output2d` of this layer on its input.
        field: the receptive field of its output pixels, for (C, H, W) outputs; else None.
        inputs: pooling layers only: what it received (first image), to show its windows.
    """

    name: str
    kind: str
    module: str
    detail: str
    input_shape: tuple[int, ...]
    output: torch.Tensor
    params: int
    geometry: Output2d | None = None
    field: Field | None = None
    inputs: torch.Tensor | None = None


def kind_of(module: nn.Module) -> str:
    """The trace's kind of a leaf module."""
    for types, kind in (
        (nn.Conv2d, "conv"),
        (POOLS, "pool"),
        (ACTIVATIONS, "activation"),
        (NORMS, "batchnorm"),
        (nn.Flatten, "flatten"),
        (nn.Linear, "linear"),
        (nn.Dropout, "dropout"),
        (nn.Softmax, "softmax"),
    ):
        if isinstance(module, types):
            return kind
    return "other"


def geometry_of(module: nn.Module, in_hw: tuple[int, int]) -> Output2d | None:
    """The conv/pool arithmetic of `cnnlab.shapes` for this module on an input of (H, W)."""
    if isinstance(module, nn.Conv2d):
        return conv2d_output(in_hw, module.kernel_size, module.stride, module.padding, module.dilation)
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        dilation = getattr(module, "dilation", 1)
        stride = module.stride or None
        return pool2d_output(
            in_hw, module.kernel_size, stride, module.padding, dilation, module.ceil_mode
        )
    return None


def adaptive_window(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[tuple, tuple]:
    """Kernel and stride spanning an adaptive pool's widest window (exact when sizes divide)."""
    stride = tuple(max(1, n // o) for n, o in zip(in_hw, out_hw, strict=True))
    kernel = tuple(n - (o - 1) * s for n, o, s in zip(in_hw, out_hw, stride, strict=True))
    return kernel, stride


def _detail(module: nn.Module, geometry: Output2d | None) -> str:
    """One line naming the layer and its settings."""
    name = type(module).__name__
    if isinstance(module, nn.Conv2d) and geometry is not None:
        k = f"{geometry.h.kernel}x{geometry.w.kernel}"
        pad = geometry.h.pad_before if geometry.h.pad_before == geometry.w.pad_before else "(h, w)"
        return (
            f"{name} {module.in_channels}->{module.out_channels} {k}, stride "
            f"{geometry.h.stride}, padding {pad}"
        )
    if geometry is not None:
        return f"{name} {geometry.h.kernel}x{geometry.w.kernel}, stride {geometry.h.stride}"
    if isinstance(module, nn.Linear):
        return f"{name} {module.in_features}->{module.out_features}"
    return name


def _new_field(module: nn.Module, field: Field, geometry: Output2d | None, in_hw, out_hw) -> Field:
    """The field of a module's output from the field of its input."""
    if geometry is not None:
        axes = (geometry.h, geometry.w)
        return field.through(
            tuple(a.effective_kernel for a in axes),
            tuple(a.stride for a in axes),
            tuple(a.pad_before for a in axes),
        )
    if isinstance(module, nn.AdaptiveMaxPool2d | nn.AdaptiveAvgPool2d):
        kernel, stride = adaptive_window(in_hw, out_hw)
        return field.through(kernel, stride, (0, 0))
    if tuple(in_hw) == tuple(out_hw):
        return field
    whole = field.input_size
    return Field(whole, whole, (0, 0), whole)  # an unknown resizing: every pixel sees everything


def _own_params(module: nn.Module) -> int:
    """Parameters the module holds itself (not its children's, not BatchNorm statistics)."""
    return sum(p.numel() for p in module.parameters(recurse=False))


class _Recorder:
    """The forward hook of `layer_trace`: one LayerTrace per leaf call, and each tensor's field."""

    def __init__(self, names: dict[nn.Module, str], x: torch.Tensor):
        self.names = names
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        self.fields: dict[int, tuple[torch.Tensor, Field]] = {
            id(x): (x, Field((1, 1), (1, 1), (0, 0), hw))
        }
        self.traces: list[LayerTrace] = []

    def field_of(self, t: torch.Tensor) -> Field | None:
        """The field of a tensor a layer made, else (a residual sum) the widest of its map size."""
        if id(t) in self.fields and self.fields[id(t)][0] is t:
            return self.fields[id(t)][1]
        same = [f for u, f in self.fields.values() if u.dim() == 4 and u.shape[-2:] == t.shape[-2:]]
        return max(same, key=lambda f: f.size, default=None)

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        t_in = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if not isinstance(output, torch.Tensor) or t_in is None:
            return
        geometry = geometry_of(module, tuple(t_in.shape[-2:])) if t_in.dim() == 4 else None
        field = None
        if output.dim() == 4 and t_in.dim() == 4 and (before := self.field_of(t_in)) is not None:
            in_hw, out_hw = tuple(t_in.shape[-2:]), tuple(output.shape[-2:])
            field = _new_field(module, before, geometry, in_hw, out_hw)
            self.fields[id(output)] = (output, field)
        self.traces.append(
            LayerTrace(
                self.names[module],
                kind_of(module),
                type(module).__name__,
                _detail(module, geometry),
                tuple(t_in.shape[1:]),
                output[0].detach().clone(),  # a copy: an in-place ReLU would overwrite it
                _own_params(module),
                geometry,
                field,
                t_in[0].detach().clone() if isinstance(module, POOLS) else None,
            )
        )


def layer_trace(model: nn.Module, x: torch.Tensor) -> list[LayerTrace]:
    """Run `model` on the normalised batch x (B, C, H, W) and record every leaf layer.

    Args:
        model: any model; it is copied, put in eval mode and hooked privately.
        x: float (B, C, H, W), normalised as in training (`preprocess.to_model_input`).

    Returns:
        One `LayerTrace` per leaf module call, in call order (a module called twice appears
        twice; an empty `nn.Sequential`, an identity shortcut, not at all), then "softmax":
        the probabilities of the model's output (its logits).
    """
    model = copy.deepcopy(model).eval()  # private hooks: the caller's model is never touched
    names = {m: n for n, m in model.named_modules() if not list(m.children())}
    names = {m: n for m, n in names.items() if type(m) is not nn.Sequential}  # identity shortcuts
    recorder = _Recorder(names, x)
    handles = [m.register_forward_hook(recorder) for m in names]
    try:
        with torch.inference_mode():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    probs = torch.softmax(logits.float(), 1)[0]
    shape = tuple(logits.shape[1:])
    recorder.traces.append(LayerTrace("softmax", "softmax", "softmax", "softmax", shape, probs, 0))
    return recorder.traces
