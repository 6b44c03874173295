"""E02: where a training step's time goes (torch.profiler, per op), for a few nets.

Usage: python e02_profile.py [steps] ; profiles `steps` training steps after 5 warm-up steps.
"""

import sys

import torch
import torch.nn.functional as F
from harness import MEAN, NETS, STD, Config, data, macs_per_image
from torch.profiler import ProfilerActivity, profile, record_function

from cnnlab.data.batches import InMemoryBatches


def profile_net(cfg: Config, steps: int) -> None:
    torch.set_num_threads(cfg.threads)
    d = data()
    torch.manual_seed(0)
    model = NETS[cfg.net](**cfg.net_kw).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=cfg.betas, foreach=True)
    batches = InMemoryBatches(
        d["xtr"], d["ytr"], cfg.batch_size, MEAN, STD, shuffle=True, channels_last=True
    )
    it = iter(batches)

    def step():
        with record_function("gather"):
            x, y = next(it)
        with record_function("forward"):
            loss = F.cross_entropy(model(x), y)
        with record_function("backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("optimizer"):
            opt.step()

    for _ in range(5):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    print(
        f"\n=== {cfg.net} {cfg.net_kw} bs {cfg.batch_size} threads {cfg.threads} "
        f"({macs_per_image(NETS[cfg.net](**cfg.net_kw)) / 1e6:.2f} MMACs/image), {steps} steps"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22))


steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
profile_net(Config(net="ref", threads=1), steps)
profile_net(Config(net="stride", net_kw=dict(c1=16, c2=32), threads=1), steps)
