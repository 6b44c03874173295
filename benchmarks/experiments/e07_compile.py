"""E07: torch.compile (inductor) on the training step: compile time vs steady-state step cost."""

import statistics
import time

import torch
import torch.nn.functional as F
from harness import MEAN, NETS, STD, data

from cnnlab.data.batches import InMemoryBatches

torch.set_num_threads(1)
d = data()


def run(compiled: bool, steps=60):
    torch.manual_seed(0)
    m = NETS["stride"](c1=8, c2=16, c3=32).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.7, 0.9), foreach=True)
    fwd = torch.compile(m) if compiled else m
    it = iter(
        InMemoryBatches(
            d["xtr"], d["ytr"], 256, MEAN, STD, shuffle=True, drop_last=True, channels_last=True
        )
    )
    times = []
    t_first = time.perf_counter()
    for i in range(steps):
        t0 = time.process_time()
        x, y = next(it)
        loss = F.cross_entropy(fwd(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.process_time() - t0)
        if i == 0:
            first = time.perf_counter() - t_first
    return first, statistics.median(times[10:]) * 1e3, min(times[10:]) * 1e3


for compiled in (False, True, False):
    first, med, lo = run(compiled)
    print(
        f"compiled={compiled}: first step {first:.2f} s wall, then median {med:.1f} ms cpu, "
        f"min {lo:.1f}",
        flush=True,
    )
