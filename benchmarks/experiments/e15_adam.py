"""E15: Adam step cost for the s8/16/32 params: foreach vs fused vs for-loop vs one flat tensor."""
# ruff: noqa: B023, E501  (micro-benchmarks: each closure is timed inside its own loop turn)

import statistics
import sys
import time

import torch

sys.path.insert(0, ".")
from harness import NETS

torch.set_num_threads(1)


def mk():
    m = NETS["stride"](c1=8, c2=16, c3=32)
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    return m


res = {}
ms = {k: mk() for k in ("foreach", "fused", "single", "flat")}
opts = {
    "foreach": torch.optim.Adam(ms["foreach"].parameters(), lr=1e-3, foreach=True),
    "fused": torch.optim.Adam(ms["fused"].parameters(), lr=1e-3, fused=True),
    "single": torch.optim.Adam(ms["single"].parameters(), lr=1e-3, foreach=False),
}
n = sum(p.numel() for p in ms["flat"].parameters())
flat = torch.nn.Parameter(torch.zeros(n))
flat.grad = torch.randn(n)
opts["flat"] = torch.optim.Adam([flat], lr=1e-3, fused=True)
print("params", n, "tensors", len(list(ms["flat"].parameters())))
for o in opts.values():
    o.step()
ts = {k: [] for k in opts}
for _ in range(30):
    for k, o in opts.items():
        c = time.process_time()
        for _ in range(20):
            o.step()
        ts[k].append((time.process_time() - c) / 20 * 1e3)
for k, v in ts.items():
    print(k, "median ms", round(statistics.median(v), 3), "min", round(min(v), 3))
