"""The recommended CNN: stages of (conv-BN-ReLU) x 2 + maxpool, doubling the width each stage."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models import register_model
from cnnlab.models._options import fraction_option, int_option
from cnnlab.models._sizing import MAX_WIDTH
from cnnlab.summary import flatten_features


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (same padding, no bias: BatchNorm has one) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Stages of (conv-BN-ReLU) x 2 + maxpool, doubling the width; then dropout and a linear."""

    shape_paths = (("features", "classifier"),)  # forward's order, for cnnlab.layer_shapes

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
        flat = flatten_features(self.features, input_shape)
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
    """`width`: channels of the first stage; `stages`: as many as the image can halve; `dropout`."""
    h, w = input_shape[1:]
    most = max(1, min(h, w).bit_length() - 1)  # each maxpool halves (floor): 2**stages <= side
    why = f" (each stage halves the image: {h}x{w} is too small for more)"
    return SmallCNN(
        input_shape,
        num_classes,
        int_option("cnn", "width", width, 1, MAX_WIDTH),
        int_option("cnn", "stages", stages, 1, most, why),
        fraction_option("cnn", "dropout", dropout),
    )
