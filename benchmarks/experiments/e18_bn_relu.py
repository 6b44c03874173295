"""E18: BatchNorm and ReLU forward+backward cost per activation shape (NCHW vs channels_last)."""
# ruff: noqa: B023, E501  (micro-benchmarks: each closure is timed inside its own loop turn)

import statistics

import torch
import torch.nn as nn
import torch.nn.functional as F
from harness import cpu_ms

torch.set_num_threads(1)


def bench(fn, reps=7, n=20):
    ts = cpu_ms(fn, reps, n)
    return round(statistics.median(ts), 3)


for shape in [(256, 16, 12, 12), (256, 24, 24, 24), (256, 32, 5, 5)]:
    for cl in (True, False):
        mf = torch.channels_last if cl else torch.contiguous_format
        h = torch.randn(*shape).contiguous(memory_format=mf).requires_grad_()
        g = torch.randn(*shape).contiguous(memory_format=mf)
        bn = nn.BatchNorm2d(shape[1])

        def fwd():
            with torch.no_grad():
                bn(h)

        out = bn(h)

        def fb():
            bn(h).backward(g)

        def relu_fb():
            F.relu(h).backward(g)

        def manual():
            m = h.mean((0, 2, 3), keepdim=True)
            v = h.var((0, 2, 3), keepdim=True, unbiased=False)
            ((h - m) * torch.rsqrt(v + 1e-5)).backward(g)

        print(
            shape,
            "cl" if cl else "nchw",
            "bn fwd",
            bench(fwd),
            "bn f+b",
            bench(fb),
            "relu f+b",
            bench(relu_fb),
            "manual bn f+b",
            bench(manual),
        )
