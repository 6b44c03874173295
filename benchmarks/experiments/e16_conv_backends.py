"""E16: conv fwd+bwd: oneDNN (mkldnn) vs THNN, channels_last vs NCHW, per layer shape."""
# ruff: noqa: B023, E501  (micro-benchmarks: each closure is timed inside its own loop turn)

import statistics

import torch
import torch.nn as nn
from harness import cpu_ms

torch.set_num_threads(1)


def bench(fn, reps=7, n=10):
    ts = cpu_ms(fn, reps, n)
    return round(statistics.median(ts), 2)


layers = [
    ("c1 1-16 k5s2", 1, 16, 5, 2, 28, False),
    ("c2 16-32 k3s2", 16, 32, 3, 2, 12, True),
    ("c3 32-64 k3s1", 32, 64, 3, 1, 5, True),
    ("ref c1 1-24 k5", 1, 24, 5, 1, 28, False),
    ("ref c2 24-32 k5", 24, 32, 5, 1, 12, True),
]
for name, ci, co, k, s, hw, needin in layers:
    res = {}
    for mk in (True, False):
        torch.backends.mkldnn.enabled = mk
        for cl in (True, False):
            mf = torch.channels_last if cl else torch.contiguous_format
            x = torch.randn(256, ci, hw, hw).contiguous(memory_format=mf).requires_grad_(needin)
            conv = nn.Conv2d(ci, co, k, s, bias=False).to(memory_format=mf)
            y = conv(x)
            g = torch.randn_like(y)

            def fwd():
                with torch.no_grad():
                    conv(x)

            def fb():
                conv(x).backward(g)

            res[f"{'mkl' if mk else 'thnn'}-{'cl' if cl else 'nchw'}"] = (bench(fwd), bench(fb))
    print(name, res, flush=True)
torch.backends.mkldnn.enabled = True
