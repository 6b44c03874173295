"""E22: a frozen first layer (random, or whitening filters computed from the data) vs a learned one.

With conv1 frozen, backward stops at conv2: no grad for conv1's output, so neither conv2's
input gradient nor relu1's backward run (airbench, Keller Jordan 2024, freezes its first layer
the same way: patch-whitening filters from the training data). Also an NHWC flatten before the
linear layer, so its gradient arrives channels_last (a NCHW gradient against a channels_last
ReLU output takes a slow path in threshold_backward).
Run: `PYTHONPATH=src python benchmarks/experiments/e22_frozen_first_layer.py [seeds...]`.

Measured 2026-12-01, 2-vCPU AMD EPYC (Zen 5), 2 threads, seeds 0-2, one epoch (the harness's
loop; median s, mean test accuracy plain and with 4 TTA shifts):

    learned conv1 (8 filters)            1.08 s  99.11 %  99.17 %
    frozen random conv1                  0.80 s  98.86 %  98.94 %
    frozen whitening conv1 (8 filters)   0.80 s  98.99 %  99.03 %
    frozen whitening, 12 filters         0.85 s  99.02 %  99.12 %

Micro-timings (same machine, one step of batch 256): the NHWC flatten took the learned net
from 4.85 to 4.10 ms a step; freezing conv1 on top of it to 3.23 ms. A NCHW gradient against a
channels_last ReLU output: threshold_backward 700 us, against 21 us with both channels_last.
"""

import sys

import harness
import torch
import torch.nn as nn
import torch.nn.functional as F
from harness import Config, compare, variant


def whitening_filters(k: int = 5, n_eig: int = 4, images: int = 5000, eps: float = 1e-2) -> torch.Tensor:
    """(2 * n_eig, 1, k, k): the top eigenvectors of the k x k patch covariance, scaled by
    1/sqrt(eigenvalue), each with its negative (so a ReLU after it keeps both signs)."""
    x = harness.data()["xtr"][:images].float().div(255).sub(harness.MEAN[0]).div(harness.STD[0])
    patches = F.unfold(x, k, stride=2).transpose(1, 2).reshape(-1, k * k)  # (N * L, k*k)
    patches = patches - patches.mean(0)
    cov = patches.T @ patches / len(patches)
    eigval, eigvec = torch.linalg.eigh(cov)  # ascending
    top = eigvec[:, -n_eig:].flip(1).T / (eigval[-n_eig:].flip(0) + eps).sqrt()[:, None]
    w = top.reshape(n_eig, 1, k, k)
    return torch.cat([w, -w])


class NhwcFlatten(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1)


def fastnet(c1=8, c2=24, c3=64, first="learned", nhwc=True, n_eig=4) -> nn.Module:
    conv1 = nn.Conv2d(1, c1, 5, 2, bias=first == "learned")
    layers = [conv1, nn.ReLU(inplace=True)]
    layers += harness.conv_bn(c1, c2, 3, 2) + harness.conv_bn(c2, c3, 3, 1)
    layers += [NhwcFlatten() if nhwc else nn.Flatten(), nn.Linear(c3 * 9, 10)]
    if first == "whiten":
        with torch.no_grad():
            conv1.weight.copy_(whitening_filters(n_eig=n_eig))
    if first != "learned":
        conv1.weight.requires_grad_(False)
    return nn.Sequential(*layers)


harness.NETS["fastnet"] = fastnet

base = Config(net="fastnet", lr=0.03, label_smoothing=0.1)
variants = {
    "learned conv1": base,
    "frozen random conv1": variant(base, net_kw=dict(first="random")),
    "frozen whitening conv1": variant(base, net_kw=dict(first="whiten")),
    "frozen whitening 12 filt": variant(base, net_kw=dict(first="whiten", c1=12, n_eig=6)),
}
if __name__ == "__main__":
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2, 3, 4]
    for cfg in variants.values():
        cfg.threads = 2
    compare(variants, seeds, out="/tmp/e22.json")
