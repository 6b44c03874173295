"""The `fast` recipe's net: few multiply-adds per image, stride-2 convs, optional whitening stem."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import register_model
from cnnlab.models._options import choice_option, ints_option
from cnnlab.models._sizing import MAX_WIDTH
from cnnlab.summary import flatten_features


class FastCNN(nn.Module):
    """Few FLOPs per image at 99 % on MNIST in one epoch on a CPU (the `fast` recipe).

    On a CPU a small net's step time goes to the elementwise passes over its activations
    (BatchNorm, ReLU and their backward) more than to the convolutions' arithmetic, so the
    activations are kept small: stride 2 instead of pooling shrinks 28x28 to 12x12 in the first
    layer, that layer has only 8 channels and no BatchNorm (its input is already standardised,
    so BatchNorm there buys no accuracy), and the widest layer runs on 5x5 maps. The figures
    against the published GPU recipe's conv24/conv32 net are in benchmarks/BENCHMARKS.md.

    `stem="whiten"` freezes conv1 as patch-whitening filters computed from the training images
    (`init_from_data`, called by `fit` before the first step; the idea is airbench's, Keller
    Jordan 2024): backward then stops at conv2, so neither conv2's input gradient nor conv1's
    ReLU backward run. The default `stem="learned"` trains conv1.
    """

    STEMS = ("learned", "whiten")
    shape_paths = (("features", "classifier"),)  # forward's shapes, for cnnlab.layer_shapes

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
        flat = flatten_features(self.features, input_shape)  # 576 for 28x28 and widths[2] = 64
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
            # slow path in ReLU's backward
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
    """`widths`: the three conv widths, each 1 to MAX_WIDTH; `stem`: "learned" or "whiten"."""
    sizes = ints_option("fast", "widths", widths, 1, MAX_WIDTH, 3)
    stem = choice_option("fast", "stem", stem, FastCNN.STEMS)
    most = 2 * 25 * input_shape[0]  # each of the 5x5xC patch directions, with both signs
    if stem == "whiten" and (sizes[0] % 2 or sizes[0] > most):
        raise ConfigError(
            f"model 'fast': bad option widths={list(sizes)}: a whitening stem needs an even "
            f"first width from 2 to {most}, not {sizes[0]}"
        )
    return FastCNN(input_shape, num_classes, sizes, stem)
