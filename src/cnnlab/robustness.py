"""How brittle is a trained model? Moves, turns and zooms of its input, and the smallest nudge
that changes its answer.

- `affine_digit` moves/rotates/scales a uint8 model input (after the dataset's preprocessing,
  so the centring that MNIST's preprocessing does is not undone);
- `shift_images` / `shift_test` measure accuracy on test images moved right and down by k
  pixels (no re-centring): the lesson's "an MLP loses a moved digit, a CNN holds it";
- `smallest_linf_nudge` searches, per image, the smallest L-infinity size of a PGD change
  (Madry et al. 2018; its one-step form is FGSM, Goodfellow et al. 2015) that makes the model
  answer something else, by bisection over the size; sizes are in units of the [0, 1] image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError

MAX_SHIFT = 14  # half of a 28x28 input: beyond it the digit has left the picture
MAX_IMAGES = 10_000  # MNIST's whole test set
BATCH = 1000


def affine_digit(
    x: torch.Tensor, dx: float = 0.0, dy: float = 0.0, rotate: float = 0.0, scale: float = 1.0
) -> torch.Tensor:
    """Move (dx right, dy down, in pixels), rotate (degrees, clockwise) and scale a uint8
    (C, H, W) or (B, C, H, W) image about its centre; bilinear, black outside. Same dtype back."""
    batched = x.dim() == 4
    xb = (x if batched else x[None]).float()
    _, _, h, w = xb.shape
    a = math.radians(rotate)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    # affine_grid maps output coords (in [-1, 1]) to input coords: the inverse of the move
    tx, ty = -2 * dx / w, -2 * dy / h
    theta = torch.tensor(
        [[cos, sin, cos * tx + sin * ty], [-sin, cos, -sin * tx + cos * ty]], dtype=torch.float32
    )
    grid = F.affine_grid(theta.expand(xb.shape[0], 2, 3), list(xb.shape), align_corners=False)
    out = F.grid_sample(xb, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.round().clamp(0, 255).to(x.dtype)
    return out if batched else out[0]


def shift_images(images: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, H, W) images moved right and down by k whole pixels; what leaves is lost, zeros enter."""
    if k == 0:
        return images.clone()
    out = torch.zeros_like(images)
    out[..., k:, k:] = images[..., :-k, :-k]
    return out


def check_shift_test(max_shift: int, n: int) -> None:
    """ConfigError unless 0 <= max_shift <= MAX_SHIFT and 1 <= n <= MAX_IMAGES."""
    if not 0 <= max_shift <= MAX_SHIFT:
        raise ConfigError(f"max_shift must be 0..{MAX_SHIFT} pixels, not {max_shift}")
    if not 1 <= n <= MAX_IMAGES:
        raise ConfigError(f"n must be 1..{MAX_IMAGES} test images, not {n}")


def shift_test(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    max_shift: int = 4,
) -> list[float]:
    """Accuracy on uint8 (B, C, H, W) images moved right and down by 0..max_shift pixels each.

    Raises:
        ConfigError: max_shift outside 0..MAX_SHIFT or no images.
    """
    check_shift_test(max_shift, max(1, len(images)))
    if len(images) == 0:
        raise ConfigError("shift_test needs at least one image")
    out = []
    for k in range(max_shift + 1):
        moved = shift_images(images, k)
        correct = 0
        with torch.inference_mode():
            for xb, yb in zip(moved.split(BATCH), targets.split(BATCH), strict=True):
                correct += int((model(normalise(xb.float() / 255, mean, std)).argmax(1) == yb).sum())
        out.append(correct / len(images))
    return out


def normalise(x01: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A [0, 1] batch normalised as in training."""
    m = torch.tensor(mean, dtype=x01.dtype).reshape(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x01.dtype).reshape(1, -1, 1, 1)
    return (x01 - m) / s


@dataclass(frozen=True)
class Nudge:
    """The smallest change found for each image of a batch.

    Attributes:
        images: the nudged images, float (B, C, H, W) in [0, 1] (the original where none worked).
        labels: the model's answer for each nudged image (class indices).
        found: whether a change of size <= 1 changed the answer.
        linf, l2: the change's largest pixel change and its Euclidean length ([0, 1] units).
    """

    images: torch.Tensor
    labels: torch.Tensor
    found: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor


def _pgd(model, x, y, eps, mean, std, steps: int) -> torch.Tensor:
    """Untargeted L-infinity PGD from x (no random start): eps is (B,), per image."""
    e = eps.reshape(-1, 1, 1, 1)
    alpha = 2.5 * e / steps
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(normalise(adv, mean, std)), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.minimum(torch.maximum(adv, x - e), x + e).clamp(0, 1)
    return adv.detach()


def smallest_linf_nudge(
    model: nn.Module,
    x01: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    steps: int = 10,
    bisections: int = 10,
) -> Nudge:
    """The smallest L-infinity PGD change (searched by bisection) that changes each answer.

    Args:
        model: a classifier in eval mode (its parameters are not changed).
        x01: float (B, C, H, W) images in [0, 1].
        labels: (B,) class indices to move away from (the model's own answers).
        mean, std: the run's normalisation.
        steps: PGD steps per tried size.
        bisections: halvings of the size interval [0, 1] (10: within 0.001).

    Raises:
        ConfigError: images outside [0, 1] or steps/bisections below 1.
    """
    if steps < 1 or bisections < 1:
        raise ConfigError(f"steps and bisections must be >= 1, not {steps} and {bisections}")
    if x01.numel() and (float(x01.min()) < 0 or float(x01.max()) > 1):
        raise ConfigError("images must be in [0, 1] (uint8 / 255)")
    x, labels = x01.detach().float().clone(), labels.clone()  # never inference-mode tensors
    lo, hi = torch.zeros(len(x)), torch.ones(len(x))
    best = _pgd(model, x, labels, hi, mean, std, steps)
    found = _answers(model, best, mean, std) != labels
    best = torch.where(found.reshape(-1, 1, 1, 1), best, x)
    for _ in range(bisections):
        mid = (lo + hi) / 2
        adv = _pgd(model, x, labels, mid, mean, std, steps)
        ok = (_answers(model, adv, mean, std) != labels) & found
        best = torch.where(ok.reshape(-1, 1, 1, 1), adv, best)
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    delta = (best - x).flatten(1)
    return Nudge(
        images=best,
        labels=_answers(model, best, mean, std),
        found=found,
        linf=delta.abs().amax(1) if delta.numel() else torch.zeros(len(x)),
        l2=delta.norm(dim=1),
    )


def _answers(model, x01, mean, std) -> torch.Tensor:
    """The model's class index for each [0, 1] image."""
    with torch.inference_mode():
        return model(normalise(x01, mean, std)).argmax(1)
