"""The published GPU speed recipe's net: a baseline that `cnnlab bench speedrun` times beside ours.

conv 24@5x5 -> BatchNorm -> ReLU -> maxpool 2 -> conv 32@5x5 -> BatchNorm -> ReLU -> maxpool 2
-> 256 -> classes, trained with the `reference` recipe (Adam betas (0.7, 0.9), one-cycle peak
0.01, batch 256, one epoch, float32 NCHW: the settings as published).
"""

from __future__ import annotations

from torch import nn

from cnnlab.models import register_model
from cnnlab.summary import flatten_features


class ReferenceCNN(nn.Module):
    """Two 5x5 conv-BN-ReLU-pool stages and a 256-unit hidden layer."""

    shape_paths = (("features", "classifier"),)  # forward's order, for cnnlab.layer_shapes

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.features = nn.Sequential()
        for i, (c_in, c_out) in enumerate(((input_shape[0], 24), (24, 32)), 1):
            self.features.add_module(f"conv{i}", nn.Conv2d(c_in, c_out, 5, bias=False))
            self.features.add_module(f"bn{i}", nn.BatchNorm2d(c_out))
            self.features.add_module(f"relu{i}", nn.ReLU(inplace=True))
            self.features.add_module(f"pool{i}", nn.MaxPool2d(2))  # (B, 24, 12, 12), (B, 32, 4, 4)
        flat = flatten_features(self.features, input_shape)  # 512 for 28x28
        self.classifier = nn.Sequential()
        self.classifier.add_module("flatten", nn.Flatten())
        self.classifier.add_module("linear1", nn.Linear(flat, 256))
        self.classifier.add_module("relu3", nn.ReLU(inplace=True))
        self.classifier.add_module("linear2", nn.Linear(256, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model(
    "reference-cnn", "the published GPU speed recipe's conv24/conv32 net (a benchmark baseline)"
)
def reference_cnn(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The net exactly as published (no options)."""
    return ReferenceCNN(input_shape, num_classes)
