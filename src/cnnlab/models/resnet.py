"""A small residual net (He et al. 2016): a stem conv, stages of BasicBlocks, global avg pool."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models import register_model
from cnnlab.models._options import int_option, ints_option
from cnnlab.models._sizing import MAX_LAYERS, MAX_WIDTH
from cnnlab.models.cnn import conv_bn
from cnnlab.summary import flatten_features


class BasicBlock(nn.Module):
    """He et al. 2016: two 3x3 conv-BN, plus the input (1x1 conv when the shape changes)."""

    # both paths of forward from the block's input, for cnnlab.layer_shapes
    shape_paths = (("conv1", "bn1", "conv2", "bn2"), ("shortcut",))

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

    shape_paths = (("features", "classifier"),)  # forward's order, for cnnlab.layer_shapes

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
                *(
                    BasicBlock(c_in if b == 0 else width, width, 2 if (b == 0 and s > 0) else 1)
                    for b in range(blocks)
                )
            )
            self.features.add_module(f"stage{s + 1}", stage)
            c_in = width
        self.features.add_module("pool", nn.AdaptiveAvgPool2d(1))  # (B, widths[-1], 1, 1)
        flat = flatten_features(self.features, input_shape)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("resnet", "a small residual net (3 stages of BasicBlocks) for the best accuracy")
def resnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    widths: Sequence[int] = (16, 32, 64),  # about twice cnn's multiply-adds: CPU-friendly
    blocks: int = 1,
) -> nn.Module:
    """`widths`: one per stage, each 1 to MAX_WIDTH; `blocks` per stage, MAX_LAYERS in all."""
    sizes = ints_option("resnet", "widths", widths, 1, MAX_WIDTH, (1, MAX_LAYERS))
    most = MAX_LAYERS // len(sizes)
    why = f" ({len(sizes)} stages x blocks: at most {MAX_LAYERS} blocks in all)"
    return ResNet(input_shape, num_classes, sizes, int_option("resnet", "blocks", blocks, 1, most, why))
