"""The lesson's CNN and its ancestor LeNet-5: conv-pool-conv-pool, then three Linear layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models import register_model
from cnnlab.models._options import ints_option
from cnnlab.models._sizing import MAX_WIDTH
from cnnlab.summary import flatten_features


class LessonCNN(nn.Module):
    """The lesson's CNN: (conv k5 -> ReLU -> maxpool 2) x 2 -> flatten -> 128 -> 64 -> classes."""

    shape_paths = (("features", "classifier"),)  # forward's order, for cnnlab.layer_shapes

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
        flat = flatten_features(self.features, input_shape)  # the lesson's 16 when c2 == 1
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
    """`channels`: the two conv widths, each 1 to MAX_WIDTH."""
    # (16, 32), not the lesson's (6, 1): one channel after conv2 is a single ReLU that, once
    # pushed negative everywhere by a large early step, passes no gradient (a dead network).
    c1, c2 = ints_option("lesson-cnn", "channels", channels, 1, MAX_WIDTH, 2)
    return LessonCNN(input_shape, num_classes, (c1, c2))


class LeNet5(nn.Module):
    """LeCun et al. 1998: C1 6@5x5, S2 avg-pool, C3 16@5x5, S4, C5 120, F6 84, output; tanh."""

    shape_paths = (("features", "classifier"),)  # forward's order, for cnnlab.layer_shapes

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
        flat = flatten_features(self.features, input_shape)
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
    """No options: the paper's sizes."""
    return LeNet5(input_shape, num_classes)
