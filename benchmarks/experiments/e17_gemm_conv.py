"""E17: convolution as unfold/slices + matmul vs oneDNN (slower in eager: not adopted)."""
# ruff: noqa: B023, E501  (micro-benchmarks: each closure is timed inside its own loop turn)

import statistics

import torch
import torch.nn as nn
from harness import cpu_ms

torch.set_num_threads(1)


def gemm_conv(x, w, stride):
    """x channels_last (B,C,H,W); w (Co,C,k,k) -> channels_last (B,Co,Ho,Wo) via unfold + matmul."""
    B, C, H, W = x.shape
    co, _, k, _ = w.shape
    xh = x.permute(0, 2, 3, 1)  # (B,H,W,C)
    p = xh.unfold(1, k, stride).unfold(2, k, stride)  # (B,Ho,Wo,C,k,k)
    Ho, Wo = p.shape[1], p.shape[2]
    cols = p.reshape(B * Ho * Wo, C * k * k)
    out = cols @ w.reshape(co, -1).t()
    return out.view(B, Ho, Wo, co).permute(0, 3, 1, 2)


def gemm_conv2(x, w, stride):
    """weights ordered (k,k,C): patches built by k*k strided slices concatenated on channels."""
    B, C, H, W = x.shape
    co, _, k, _ = w.shape
    xh = x.permute(0, 2, 3, 1)
    Ho, Wo = (H - k) // stride + 1, (W - k) // stride + 1
    cols = torch.cat(
        [
            xh[:, i : i + stride * (Ho - 1) + 1 : stride, j : j + stride * (Wo - 1) + 1 : stride, :]
            for i in range(k)
            for j in range(k)
        ],
        dim=3,
    )  # (B,Ho,Wo,k*k*C)
    out = cols.reshape(-1, k * k * C) @ w.permute(0, 2, 3, 1).reshape(co, -1).t()
    return out.view(B, Ho, Wo, co).permute(0, 3, 1, 2)


def bench(fn, reps=9, n=10):
    ts = cpu_ms(fn, reps, n)
    return round(statistics.median(ts), 2), round(min(ts), 2)


for ci, co, k, s, hw, needin in [
    (1, 8, 5, 2, 28, False),
    (8, 16, 3, 2, 12, True),
    (16, 32, 3, 1, 5, True),
    (1, 16, 5, 2, 28, False),
    (16, 32, 3, 2, 12, True),
    (32, 64, 3, 1, 5, True),
]:
    x = torch.randn(256, ci, hw, hw).contiguous(memory_format=torch.channels_last).requires_grad_(needin)
    conv = nn.Conv2d(ci, co, k, s, bias=False).to(memory_format=torch.channels_last)
    w = conv.weight.detach().clone().contiguous().requires_grad_()
    ref = conv(x)
    g = torch.randn_like(ref)
    o1 = gemm_conv(x, w, s)
    o2 = gemm_conv2(x, w, s)
    assert torch.allclose(o1, ref, atol=1e-4) and torch.allclose(o2, ref, atol=1e-4), "mismatch"
    r = {
        "mkldnn": bench(lambda: conv(x).backward(g)),
        "unfold": bench(lambda: gemm_conv(x, w, s).backward(g)),
        "slices": bench(lambda: gemm_conv2(x, w, s).backward(g)),
    }
    print((ci, co, k, s, hw), r, flush=True)
