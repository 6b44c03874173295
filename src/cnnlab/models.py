"""The model registry: `get_model("cnn", input_shape=(1, 28, 28), num_classes=10)`.

Every builder takes the input shape (C, H, W) and the number of classes, and computes its
flatten size by running a zero image through its feature layers (no magic numbers such as
`nn.Linear(576, 10)`). Conv models keep their layers in named submodules (`features`,
`classifier`, `conv1`, `pool1`, ...) so that `explain` finds convolutions and poolings through
`named_modules()`. A model knows nothing of training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.summary import flatten_features, summarize

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, tuple[Builder, str]] = {}

# Limits checked before a model is built for real: options come from command lines and from
# the metadata of weights files, and `hidden=[10**9]` must be refused, not allocated.
MAX_INPUT_SIDE = 4096  # the image decoder's cap (cnnlab.data.images.MAX_PIXELS)
MAX_CHANNELS = 64
MAX_PARAMETERS = 100_000_000  # 400 MB of float32, ~300x our resnet
MAX_ACTIVATION = 1 << 28  # elements of the largest layer output in the batch-2 shape pass (1 GiB)
MAX_LAYERS = 64  # hidden sizes of an mlp, stages x blocks of a resnet


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
        ConfigError: unknown model, bad shape or an option the builder does not take.
        ShapeError: the input is too small for the model's convolutions and poolings.
    """
    builder, _ = _lookup(name)
    shape = _input_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2, not {num_classes!r}")
    try:
        with torch.device("meta"):  # shapes without memory: check the size first
            _check_size(name, builder(shape, num_classes, **kwargs), shape)
        return builder(shape, num_classes, **kwargs)
    except (TypeError, ValueError, OverflowError) as e:  # int(inf), a string for a size, ...
        raise ConfigError(f"model {name!r}: bad option ({e})") from None


def _input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
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


def _check_size(name: str, probe: nn.Module, shape: tuple[int, int, int]) -> None:
    """Refuse a model (built on the meta device) whose weights or activations are too large."""
    params = sum(p.numel() for p in probe.parameters())
    if params > MAX_PARAMETERS:
        raise ConfigError(
            f"model {name!r} with these options has {params:,} parameters, over the limit of "
            f"{MAX_PARAMETERS:,}; use smaller layers"
        )
    largest = max((math.prod(layer.output_shape) for layer in summarize(probe, shape).layers),
                  default=0)  # fmt: skip
    if largest > MAX_ACTIVATION:
        raise ConfigError(
            f"model {name!r} on input {shape} makes a layer output of {largest:,} values, over "
            f"the limit of {MAX_ACTIVATION:,}; use smaller images or fewer channels"
        )


def _lookup(name: str) -> tuple[Builder, str]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def flat_features(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Number of features `module` outputs per image, found by a zero batch (cnnlab.summary)."""
    try:
        return flatten_features(module, input_shape)
    except ShapeError as e:  # names the layer: "conv2 (Conv2d) on input (2, 6, 2, 2): ..."
        raise ShapeError(
            f"input shape {tuple(input_shape)} is too small for these layers ({e}); "
            "use larger images or fewer poolings"
        ) from None


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one image (convolutions and linear layers)."""
    return summarize(model, input_shape).total_macs


# --- the models, simplest first ------------------------------------------------------------


class MLP(nn.Module):
    """Flatten, then Linear+ReLU per hidden size, then a Linear to the classes."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, hidden: Sequence[int]):
        super().__init__()
        sizes = [input_shape[0] * input_shape[1] * input_shape[2], *hidden]
        layers: list[nn.Module] = [nn.Flatten()]  # (B, C, H, W) -> (B, C*H*W)
        for a, b in zip(sizes, sizes[1:], strict=False):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


@register_model("mlp", "the lesson's simple NN: flatten -> 256 -> 128 -> 64 -> classes, ReLU")
def mlp(
    input_shape: tuple[int, int, int], num_classes: int, hidden: Sequence[int] = (256, 128, 64)
) -> nn.Module:
    if not hidden or min(hidden) < 1 or len(hidden) > MAX_LAYERS:
        raise ConfigError(f"mlp hidden sizes must be 1 to {MAX_LAYERS} positive ints, not {hidden}")
    return MLP(input_shape, num_classes, tuple(hidden))


class LessonCNN(nn.Module):
    """The lesson's CNN: (conv k5 -> ReLU -> maxpool 2) x 2 -> flatten -> 128 -> 64 -> classes."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, channels: tuple[int, int]):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential()
        self.features.add_module("conv1", nn.Conv2d(input_shape[0], c1, kernel_size=5))
        self.features.add_module("relu1", nn.ReLU())
        self.features.add_module("pool1", nn.MaxPool2d(2, 2))  # (B, c1, 12, 12) for 28x28
        self.features.add_module("conv2", nn.Conv2d(c1, c2, kernel_size=5))
        self.features.add_module("relu2", nn.ReLU())
        self.features.add_module("pool2", nn.MaxPool2d(2, 2))  # (B, c2, 4, 4) for 28x28
        flat = flat_features(self.features, input_shape)  # the lesson's 16 when c2 == 1
        self.classifier = nn.Sequential()
        self.classifier.add_module("flatten", nn.Flatten())
        self.classifier.add_module("linear1", nn.Linear(flat, 128))
        self.classifier.add_module("relu3", nn.ReLU())
        self.classifier.add_module("linear2", nn.Linear(128, 64))
        self.classifier.add_module("relu4", nn.ReLU())
        self.classifier.add_module("linear3", nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(
    "lesson-cnn",
    "the lesson's CNN (conv5-pool-conv5-pool-128-64); channels=(6, 1) is its exact 16-feature form",
)
def lesson_cnn(
    input_shape: tuple[int, int, int], num_classes: int, channels: Sequence[int] = (16, 32)
) -> nn.Module:
    # (16, 32), not the lesson's (6, 1): one channel after conv2 is a single ReLU that, once
    # pushed negative everywhere by a large early step, passes no gradient (a dead network).
    if len(channels) != 2 or min(channels) < 1:
        raise ConfigError(f"lesson-cnn channels must be two positive ints, not {channels}")
    return LessonCNN(input_shape, num_classes, (int(channels[0]), int(channels[1])))


class LeNet5(nn.Module):
    """LeCun et al. 1998: C1 6@5x5, S2 avg-pool, C3 16@5x5, S4, C5 120, F6 84, output; tanh."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        # The paper feeds 32x32 images (MNIST padded by 2); pad smaller inputs the same way.
        pad = max(0, (32 - min(input_shape[1:])) // 2)
        self.features = nn.Sequential()
        self.features.add_module("conv1", nn.Conv2d(input_shape[0], 6, 5, padding=pad))
        self.features.add_module("tanh1", nn.Tanh())
        self.features.add_module("pool1", nn.AvgPool2d(2, 2))  # (B, 6, 14, 14)
        self.features.add_module("conv2", nn.Conv2d(6, 16, 5))
        self.features.add_module("tanh2", nn.Tanh())
        self.features.add_module("pool2", nn.AvgPool2d(2, 2))  # (B, 16, 5, 5)
        flat = flat_features(self.features, input_shape)
        self.classifier = nn.Sequential()
        self.classifier.add_module("flatten", nn.Flatten())
        self.classifier.add_module("c5", nn.Linear(flat, 120))  # C5: a 5x5 conv over 5x5 maps
        self.classifier.add_module("tanh3", nn.Tanh())
        self.classifier.add_module("f6", nn.Linear(120, 84))
        self.classifier.add_module("tanh4", nn.Tanh())
        self.classifier.add_module("output", nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("lenet5", "LeCun 1998: conv6-avgpool-conv16-avgpool-120-84, tanh")
def lenet5(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return LeNet5(input_shape, num_classes)


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (same padding, no bias: BatchNorm has one) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Stages of (conv-BN-ReLU) x 2 + maxpool, doubling the width; then dropout and a linear."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int,
        stages: int,
        dropout: float,
    ):
        super().__init__()
        self.features = nn.Sequential()
        c_in, c = input_shape[0], width
        for s in range(stages):  # 28x28 -> (B, w, 14, 14) -> (B, 2w, 7, 7) -> (B, 4w, 3, 3)
            self.features.add_module(f"conv{2 * s + 1}", conv_bn(c_in, c))
            self.features.add_module(f"conv{2 * s + 2}", conv_bn(c, c))
            self.features.add_module(f"pool{s + 1}", nn.MaxPool2d(2))
            c_in, c = c, 2 * c
        flat = flat_features(self.features, input_shape)
        self.classifier = nn.Sequential()
        self.classifier.add_module("flatten", nn.Flatten())
        self.classifier.add_module("dropout", nn.Dropout(dropout))
        self.classifier.add_module("linear", nn.Linear(flat, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("cnn", "recommended: 3 stages of 2 conv-BN-ReLU + maxpool (16-32-64), linear")
def cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    width: int = 16,
    stages: int = 3,
    dropout: float = 0.1,
) -> nn.Module:
    if width < 1 or stages < 1 or not 0 <= dropout < 1:
        raise ConfigError(
            f"cnn needs width >= 1, stages >= 1 and 0 <= dropout < 1, not {width}, {stages}, {dropout}"
        )
    return SmallCNN(input_shape, num_classes, int(width), int(stages), float(dropout))


class FastCNN(nn.Module):
    """Few FLOPs per image at 99 % on MNIST in one epoch on a CPU (the `fast` recipe, issue 7).

    On a CPU a small net's step time goes to the elementwise passes over its activations
    (BatchNorm, ReLU and their backward) more than to the convolutions' arithmetic, so the
    activations are kept small: stride 2 instead of pooling shrinks 28x28 to 12x12 in the first
    layer, that layer has only 8 channels and no BatchNorm (its input is already standardised;
    dropping BN there costs no accuracy and saves ~10 % of the step), and the widest layer runs
    on 5x5 maps. About 0.2 M multiply-adds per image against 1.7 M for the published GPU
    recipe's conv24/conv32 net, at the same one-epoch accuracy (benchmarks/BENCHMARKS.md).

    `stem="whiten"` freezes conv1 as patch-whitening filters computed from the training images
    (`init_from_data`, called by `fit` before the first step; the idea is airbench's, Keller
    Jordan 2024): backward then stops at conv2, so neither conv2's input gradient nor conv1's
    ReLU backward run, ~20 % of the step (E22). The default `stem="learned"` trains conv1.
    """

    STEMS = ("learned", "whiten")

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        widths: tuple[int, int, int],
        stem: str = "learned",
    ):
        super().__init__()
        w1, w2, w3 = widths
        self.stem = stem
        conv1 = nn.Conv2d(input_shape[0], w1, 5, stride=2, bias=stem == "learned")  # (B, w1, 12, 12)
        if stem == "whiten":
            conv1.weight.requires_grad_(False)
        self.features = nn.Sequential()
        self.features.add_module("conv1", conv1)
        self.features.add_module("relu1", nn.ReLU(inplace=True))
        self.features.add_module("conv2", nn.Conv2d(w1, w2, 3, stride=2, bias=False))  # (B, w2, 5, 5)
        self.features.add_module("bn2", nn.BatchNorm2d(w2))
        self.features.add_module("relu2", nn.ReLU(inplace=True))
        self.features.add_module("conv3", nn.Conv2d(w2, w3, 3, bias=False))  # (B, w3, 3, 3)
        self.features.add_module("bn3", nn.BatchNorm2d(w3))
        self.features.add_module("relu3", nn.ReLU(inplace=True))
        flat = flat_features(self.features, input_shape)  # 576 for 28x28 and widths[2] = 64
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if (
            x.dim() == 4
            and x.shape[1] > 1
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            # Flatten channels_last maps in memory order (h, w, c), with the linear weights
            # reordered to match: the same numbers as Flatten + Linear, but the gradient reaches
            # relu3 channels_last; a NCHW gradient against its channels_last output takes a
            # slow path in ReLU's backward (~15 % of the step, E22)
            linear = self.classifier[1]
            b, c, h, w = x.shape
            weight = linear.weight.view(-1, c, h, w).permute(0, 2, 3, 1).reshape(-1, c * h * w)
            return nn.functional.linear(x.permute(0, 2, 3, 1).reshape(b, -1), weight, linear.bias)
        return self.classifier(x)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Set a whitening stem from normalised training images (N, C, H, W); else nothing.

        conv1 gets the top w1/2 eigenvectors of the covariance of its 5x5 input patches,
        each scaled by 1/sqrt(eigenvalue + 0.01) and paired with its negative, so the ReLU
        after it passes both signs of every direction.
        """
        if self.stem != "whiten":
            return
        conv1 = self.features.conv1
        out_ch, (k, _), stride = conv1.out_channels, conv1.kernel_size, conv1.stride
        x = images.to(conv1.weight.device, torch.float32).contiguous()
        cols = nn.functional.unfold(x, k, stride=stride)  # (N, C*k*k, L)
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (C*k*k, N*L): one patch a column
        cols = cols - cols.mean(1, keepdim=True)
        cov = cols @ cols.T / max(cols.shape[1] - 1, 1)
        eigval, eigvec = torch.linalg.eigh(cov.double())  # ascending
        n = out_ch // 2
        top = eigvec[:, -n:].flip(1).T / (eigval[-n:].flip(0).clamp_min(0) + 1e-2).sqrt()[:, None]
        filters = top.reshape(n, *conv1.weight.shape[1:]).to(conv1.weight.dtype)
        conv1.weight.copy_(torch.cat([filters, -filters]))


@register_model("fast", "fewest FLOPs at 99 %: stride-2 convs 8-24-64 (stem=whiten: frozen), BN, linear")
def fast(
    input_shape: tuple[int, int, int],
    num_classes: int,
    widths: Sequence[int] = (8, 24, 64),
    stem: str = "learned",
) -> nn.Module:
    if len(widths) != 3 or min(widths) < 1:
        raise ConfigError(f"fast needs three positive widths, not {widths}")
    if stem not in FastCNN.STEMS:
        raise ConfigError(f"fast: stem must be one of {', '.join(FastCNN.STEMS)}, not {stem!r}")
    if stem == "whiten" and (widths[0] % 2 or widths[0] > 2 * 25 * input_shape[0]):
        raise ConfigError(f"fast: a whitening stem needs an even first width <= "
                          f"{2 * 25 * input_shape[0]}, not {widths[0]}")  # fmt: skip
    return FastCNN(input_shape, num_classes, tuple(int(w) for w in widths), str(stem))


class BasicBlock(nn.Module):
    """He et al. 2016: two 3x3 conv-BN, plus the input (1x1 conv when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A stem conv, then stages of BasicBlocks (stride 2 from the second), global avg pool."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        widths: Sequence[int],
        blocks: int,
    ):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("stem", conv_bn(input_shape[0], widths[0]))
        c_in = widths[0]
        for s, width in enumerate(widths):
            stage = nn.Sequential(
                *(BasicBlock(c_in if b == 0 else width, width, 2 if (b == 0 and s > 0) else 1)
                  for b in range(blocks))
            )  # fmt: skip
            self.features.add_module(f"stage{s + 1}", stage)
            c_in = width
        self.features.add_module("pool", nn.AdaptiveAvgPool2d(1))  # (B, widths[-1], 1, 1)
        flat = flat_features(self.features, input_shape)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("resnet", "a small residual net (3 stages of BasicBlocks) for the best accuracy")
def resnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    widths: Sequence[int] = (16, 32, 64),  # 9.3M MACs per 28x28 image: 2x cnn, CPU-friendly
    blocks: int = 1,
) -> nn.Module:
    if not widths or min(widths) < 1 or blocks < 1 or len(widths) * blocks > MAX_LAYERS:
        raise ConfigError(
            f"resnet needs positive widths and blocks, at most {MAX_LAYERS} blocks in all, "
            f"not {widths}, {blocks}"
        )
    return ResNet(input_shape, num_classes, tuple(int(w) for w in widths), int(blocks))
