"""The collapse detector: a model still at chance after an epoch, and why (dead ReLUs).

With Adam at lr 0.01, an early large step can push a ReLU layer negative for every input; a
dead unit passes no gradient, so nothing upstream learns again. The lesson's CNN, whose second
conv has a single output channel, is the extreme case: one dead channel silences all 16
features the classifier sees.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlab.errors import TrainingDivergedError


@torch.no_grad()
def dead_relu_fraction(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Per ReLU layer: the fraction of its units that output 0 for every image of batch x."""
    result: dict[str, float] = {}
    hooks = []

    def hook(name):
        def record(mod, inp, out):
            alive = (out > 0).reshape(out.shape[0], -1).any(0)  # (units,)
            result[name] = 1.0 - alive.float().mean().item()

        return record

    for name, mod in model.named_modules():
        if isinstance(mod, nn.ReLU):
            hooks.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return result


def held_out_acc(row: dict) -> float:
    """An epoch's accuracy on held-out images: validation when there is a split, else test."""
    return row["val_acc"] if "val_acc" in row else row["test_acc"]


def check_collapse(
    config, epoch_metrics: dict, num_classes: int, model: nn.Module, probe: torch.Tensor
) -> None:
    """After the first epoch: a model still at chance has collapsed; say why and how to fix it."""
    chance_loss = math.log(num_classes)
    at_chance = (
        held_out_acc(epoch_metrics) < 1.5 / num_classes
        and epoch_metrics["train_loss"] > 0.9 * chance_loss
    )
    if not at_chance:
        return
    dead = dead_relu_fraction(model, probe)
    worst = max(dead, key=dead.get) if dead else None
    cause = f"learning rate {config.lr:g} is too high for {config.model}"
    if worst is not None and dead[worst] > 0.5:
        cause += (
            f": {dead[worst]:.0%} of the units of layer {worst} output 0 for every test "
            "image (dead ReLUs pass no gradient, so training cannot recover)"
        )
    fix = f"try --lr {config.lr / 10:g}"
    channels = config.model_kwargs.get("channels")
    if config.model == "lesson-cnn" and channels and min(channels) == 1:
        fix += " or the default lesson-cnn channels (a one-channel conv dies easily)"
    raise TrainingDivergedError(
        f"training collapsed: after epoch 1 {config.model} still predicts at chance (test accuracy "
        f"{held_out_acc(epoch_metrics):.2%}, loss {epoch_metrics['train_loss']:.3f} vs ln "
        f"{num_classes} = {chance_loss:.3f}). Likely cause: {cause}. Fix: {fix}"
    )
