"""E19: per-layer fwd+bwd cost of the s8/16/32 net (argv[1]: net kwargs as a dict literal)."""
# ruff: noqa: B023, E501  (micro-benchmarks: each closure is timed inside its own loop turn)

import ast
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, ".")
from harness import NETS

torch.set_num_threads(1)
cfg = dict(c1=8, c2=16, c3=32)
if len(sys.argv) > 1:
    cfg = ast.literal_eval(sys.argv[1])
m = NETS["stride"](**cfg).to(memory_format=torch.channels_last)
x = torch.randn(256, 1, 28, 28).contiguous(memory_format=torch.channels_last)
inputs = []
h = x
for i, l in enumerate(m):
    inputs.append(h.detach().clone().requires_grad_(i > 0))
    h = l(inputs[-1].clone() if isinstance(l, nn.ReLU) else inputs[-1])
ts = {i: [] for i in range(len(m))}
for _ in range(15):
    for i, l in enumerate(m):
        inp = inputs[i]
        c = time.process_time()
        for _ in range(10):
            a = inp.clone() if isinstance(l, nn.ReLU) else inp  # inplace relu needs a non-leaf
            out = l(a)
            out.backward(torch.ones_like(out))
        ts[i].append((time.process_time() - c) / 10 * 1e3)
tot = 0
for i, l in enumerate(m):
    med = statistics.median(ts[i])
    tot += med
    print(
        f"{i:2d} {str(l)[:50]:50s} in {tuple(inputs[i].shape)}  f+b median {med:.3f} ms  min {min(ts[i]):.3f}"
    )
print("sum", round(tot, 2))
