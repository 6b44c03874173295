"""What the network sees: feature maps, learned filters, and which pixels drove a decision.

The lesson draws convolution and pooling on paper; here they run on the user's own image:
- `feature_maps` records the output of every convolution (after the BatchNorm and activation
  that follow it, when they do) and of every pooling layer, found through `named_modules()`;
- `first_layer_filters` returns the kernels of the first convolution (learned, or frozen);
- `layer_trace` (in `cnnlab.explain_trace`) records every leaf layer in call order, with its
  shape, parameters and receptive field (the web lab's Network page);
- `saliency_map` (|d class score / d pixel|, Simonyan et al. 2014, smoothed) and
  `occlusion_map` (how much the class probability drops when a patch is blacked out, Zeiler &
  Fergus 2014) show which pixels mattered.

Hooks go on a private copy of the model, so explaining never disturbs a model that other
threads are predicting with.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from cnnlab.explain_trace import LayerTrace, layer_trace

__all__ = [
    "Explanation",
    "Filters",
    "Layer",
    "LayerTrace",
    "conv_and_pool_layers",
    "explain_image",
    "feature_maps",
    "first_layer_filters",
    "layer_trace",
    "occlusion_map",
    "saliency_map",
]

CONV_TYPES = (nn.Conv2d,)
POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d)
# Modules that belong to a convolution when they follow it directly in a Sequential.
AFTER_CONV = (
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
)


@dataclass(frozen=True)
class Layer:
    """A layer whose output `feature_maps` records.

    Attributes:
        name: the conv or pooling module's name in `named_modules()` (e.g. "features.conv1.0").
        kind: "conv" or "pool".
        hooked: the name of the module whose output is taken (the conv's last BatchNorm or
            activation when those follow it).
        description: e.g. "Conv2d 1->16 3x3 + BatchNorm2d + ReLU", for figure titles.
    """

    name: str
    kind: str
    hooked: str
    description: str


def conv_and_pool_layers(model: nn.Module) -> list[Layer]:
    """Every convolution and pooling layer of a model, in registration order (= forward order
    for the Sequential-built models of `cnnlab.models`).

    A conv block, a Sequential holding just a conv and its BatchNorm/activation (the `cnn`
    model's `features.conv1`), is named by the block.
    """
    modules = dict(model.named_modules())

    def full(parent: str, child: str) -> str:
        return f"{parent}.{child}" if parent else child

    followers: dict[str, list[str]] = {}  # conv name -> names of the BN/activations after it
    block_of: dict[str, str] = {}  # conv name -> the block named for it
    for parent_name, parent in modules.items():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for i, (child_name, child) in enumerate(children):
            if isinstance(child, CONV_TYPES):
                after = []
                for next_name, nxt in children[i + 1 :]:
                    if not isinstance(nxt, AFTER_CONV):
                        break
                    after.append(full(parent_name, next_name))
                followers[full(parent_name, child_name)] = after
                if parent_name and i == 0 and len(after) == len(children) - 1:
                    block_of[full(parent_name, child_name)] = parent_name
    layers = []
    for name, module in modules.items():
        if isinstance(module, CONV_TYPES):
            after = followers.get(name, [])
            k = "x".join(str(s) for s in module.kernel_size)
            desc = " + ".join(
                [f"Conv2d {module.in_channels}->{module.out_channels} {k}"]
                + [type(modules[a]).__name__ for a in after]
            )
            layers.append(Layer(block_of.get(name, name), "conv", after[-1] if after else name, desc))
        elif isinstance(module, POOL_TYPES):
            layers.append(Layer(name, "pool", name, type(module).__name__))
    return layers


def feature_maps(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """The activations of each conv and pooling layer for a normalised input batch.

    Args:
        model: any model; convolutions and poolings are found through `named_modules()`.
        x: float (B, C, H, W), normalised as in training (`preprocess.to_model_input`).
        layers: only these layer names (default: all of `conv_and_pool_layers`).

    Returns:
        {layer name: float (B, channels, h, w)} in the order the forward pass ran them; a conv
        followed by BatchNorm/activation gives their output. An MLP gives an empty dict.
    """
    model = copy.deepcopy(model).eval()  # private hooks: the caller's model is never touched
    modules = dict(model.named_modules())
    wanted = [ly for ly in conv_and_pool_layers(model) if layers is None or ly.name in layers]
    out: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            if name not in out:  # a module run twice keeps its first output
                out[name] = output.detach().clone()

        return hook

    handles = [modules[ly.hooked].register_forward_hook(hook_for(ly.name)) for ly in wanted]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return out


class Filters(NamedTuple):
    """The first convolution's kernels: its name, weights (out, in, kh, kw), and whether
    training changes them (False for a frozen stem such as fast's whitening filters)."""

    name: str
    weights: torch.Tensor
    trained: bool


def first_layer_filters(model: nn.Module) -> Filters | None:
    """The first convolution's Filters, or None for a model without one."""
    for name, module in model.named_modules():
        if isinstance(module, CONV_TYPES):
            return Filters(name, module.weight.detach().clone(), module.weight.requires_grad)
    return None


def saliency_map(
    model: nn.Module, x: torch.Tensor, target: int, samples: int = 16, noise: float = 0.15, seed: int = 0
) -> torch.Tensor:
    """|d logit[target] / d input| for one image x (1, C, H, W), averaged over `samples` noisy
    copies (SmoothGrad, Smilkov et al. 2017: plain gradients are speckled), max over channels,
    scaled to [0, 1]: (H, W).

    Args:
        noise: the noise's standard deviation relative to the input's range (0: plain gradient).
    """
    g = torch.Generator().manual_seed(seed)
    n = samples if noise > 0 else 1
    sigma = noise * float(x.max() - x.min())
    xs = x.detach().repeat(n, 1, 1, 1)  # (n, C, H, W)
    xs = (xs + sigma * torch.randn(xs.shape, generator=g)).requires_grad_(True)
    with torch.enable_grad():
        score = model(xs)[:, target].sum()
        (grad,) = torch.autograd.grad(score, xs)
    sal = grad.abs().mean(0).amax(0)  # (H, W)
    return sal / sal.max() if sal.max() > 0 else sal


def occlusion_map(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    fill: Sequence[float] | float = 0.0,
    patch: int | None = None,
    stride: int | None = None,
) -> torch.Tensor:
    """How much the target's probability drops when a square patch is covered, averaged over
    the patches covering each pixel: (H, W); > 0 where the pixels supported the decision.

    Args:
        model: the classifier.
        x: one normalised image (1, C, H, W).
        target: the class index.
        fill: the normalised value a covered pixel takes (per channel): the background.
        patch, stride: default H // 7 (4 px for 28x28) and half of that.
    """
    _, c, h, w = x.shape
    patch = patch or max(2, min(h, w) // 7)
    stride = stride or max(1, patch // 2)
    fill_t = torch.as_tensor(fill, dtype=x.dtype).reshape(-1, 1, 1).expand(c, patch, patch)
    corners = [
        (top, left)
        for top in range(0, max(1, h - patch + 1), stride)
        for left in range(0, max(1, w - patch + 1), stride)
    ]
    with torch.inference_mode():
        base = torch.softmax(model(x), 1)[0, target]
        drops = []
        for chunk in range(0, len(corners), 256):
            batch = x.repeat(len(corners[chunk : chunk + 256]), 1, 1, 1)  # (n, C, H, W)
            for i, (top, left) in enumerate(corners[chunk : chunk + 256]):
                batch[i, :, top : top + patch, left : left + patch] = fill_t
            drops.append(base - torch.softmax(model(batch), 1)[:, target])
    drop = torch.cat(drops)
    total, count = torch.zeros(h, w), torch.zeros(h, w)
    for d, (top, left) in zip(drop.tolist(), corners, strict=True):
        total[top : top + patch, left : left + patch] += d
        count[top : top + patch, left : left + patch] += 1
    return total / count.clamp(min=1)


@dataclass
class Explanation:
    """Everything `cnnlab explain` draws for one image.

    Attributes:
        prediction: the `predict.Prediction` (top classes, the uint8 model input, steps).
        target: the class index explained (the top prediction).
        layers: the conv/pool layers, in the order of `maps`.
        maps: {layer name: (channels, h, w)} for this image.
        filters: the first convolution's Filters, or None.
        saliency, occlusion: (H, W) maps of the model input.
    """

    prediction: object
    target: int
    layers: list[Layer]
    maps: dict[str, torch.Tensor]
    filters: Filters | None
    saliency: torch.Tensor
    occlusion: torch.Tensor


def explain_image(predictor, source, top: int = 3, name: str | None = None) -> Explanation:
    """Predict one image with a `predict.Predictor` and compute everything that explains it.

    Raises:
        ImageInputError: the image cannot be used.
    """
    from cnnlab.preprocess import to_model_input

    (pred,) = predictor.predict([source], top=top, names=[name] if name else None, keep_steps=True)
    x = to_model_input(pred.input, predictor.mean, predictor.std)
    model = predictor.model
    target = predictor.classes.index(pred.label)
    maps = {k: v[0] for k, v in feature_maps(model, x).items()}
    by_name = {ly.name: ly for ly in conv_and_pool_layers(model)}
    background = [(0 - m) / s for m, s in zip(predictor.mean, predictor.std, strict=True)]
    return Explanation(
        prediction=pred,
        target=target,
        layers=[by_name[k] for k in maps],
        maps=maps,
        filters=first_layer_filters(model),
        saliency=saliency_map(model, x, target),
        occlusion=occlusion_map(model, x, target, fill=background),
    )
