"""The lesson's simple NN: flatten, then Linear+ReLU per hidden size, then a Linear to the classes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models import register_model
from cnnlab.models._options import ints_option
from cnnlab.models._sizing import MAX_LAYERS, MAX_WIDTH


class MLP(nn.Module):
    """Flatten, then Linear+ReLU per hidden size, then a Linear to the classes."""

    shape_paths = (("classifier",),)  # forward's order, for cnnlab.layer_shapes

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
    """`hidden`: 1 to MAX_LAYERS layer sizes, each 1 to MAX_WIDTH."""
    sizes = ints_option("mlp", "hidden", hidden, 1, MAX_WIDTH, (1, MAX_LAYERS))
    return MLP(input_shape, num_classes, sizes)
