"""E03: cost of one training step (ms) for candidate nets and settings, interleaved reps.

Speed only (accuracy comes from full runs). CPU ms at 1 thread are robust to other processes'
load; wall ms are not. Usage: python e03_step_cost.py [threads] [set]
"""

import statistics
import sys
import time

import torch
import torch.nn.functional as F
from harness import MEAN, NETS, STD, data, macs_per_image

from cnnlab.data.batches import InMemoryBatches

S = "stride"
SETS = {
    "small": {
        "s8/16/32": (S, dict(c1=8, c2=16, c3=32), {}),
        "s8/16/32 no bn1": (S, dict(c1=8, c2=16, c3=32, bn1=False), {}),
        "s12/24/48": (S, dict(c1=12, c2=24, c3=48), {}),
        "s12/24/48 no bn1": (S, dict(c1=12, c2=24, c3=48, bn1=False), {}),
        "s16/32/64": (S, dict(c1=16, c2=32, c3=64), {}),
        "s16/32/64 no bn1": (S, dict(c1=16, c2=32, c3=64, bn1=False), {}),
        "s8/16/32 bs128": (S, dict(c1=8, c2=16, c3=32), dict(bs=128)),
    },
    "nets": {
        "ref": ("ref", {}, {}),
        "pool 8/16 k5 h64": ("pool", dict(c1=8, c2=16, k=5, hidden=64), {}),
        "stride 16/32": (S, dict(c1=16, c2=32), {}),
        "stride 16/32/64": (S, dict(c1=16, c2=32, c3=64), {}),
        "stride 32/64 h128": (S, dict(c1=32, c2=64, hidden=128), {}),
    },
    "levers": {
        "s16/32/64": (S, dict(c1=16, c2=32, c3=64), {}),
        "s16/32/64 fused adam": (S, dict(c1=16, c2=32, c3=64), dict(fused=True)),
        "s16/32/64 nchw": (S, dict(c1=16, c2=32, c3=64), dict(cl=False)),
        "s16/32/64 no bn1": (S, dict(c1=16, c2=32, c3=64, bn1=False), {}),
        "s16/32/64 no bn1/2": (S, dict(c1=16, c2=32, c3=64, bn1=False, bn2=False), {}),
        "s16/32/64 k3p1 (14x14)": (S, dict(c1=16, c2=32, c3=64, k1=3, p1=1), {}),
        "s16/32/64 bs512": (S, dict(c1=16, c2=32, c3=64), dict(bs=512)),
        "s16/32/64 bs128": (S, dict(c1=16, c2=32, c3=64), dict(bs=128)),
    },
}


def build(net, kw, cl):
    m = NETS[net](**kw)
    return m.to(memory_format=torch.channels_last) if cl else m


def time_steps(model, opt, it, steps):
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps * 1e3, (time.process_time() - c0) / steps * 1e3


def main(threads=1, which="nets", reps=5, steps=10):
    torch.set_num_threads(threads)
    d = data()
    setups = {}
    for name, (net, kw, opts) in SETS[which].items():
        torch.manual_seed(0)
        cl, bs = opts.get("cl", True), opts.get("bs", 256)
        m = build(net, kw, cl)
        kind = dict(fused=True) if opts.get("fused") else dict(foreach=True)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.7, 0.9), **kind)
        b = InMemoryBatches(
            d["xtr"], d["ytr"], bs, MEAN, STD, shuffle=True, drop_last=True, channels_last=cl
        )
        it = iter(b)
        time_steps(m, opt, it, 3)  # warm-up
        setups[name] = (m, opt, it, bs, [], [])
    for _ in range(reps):
        for m, opt, it, bs, wall, cpu in setups.values():
            w, c = time_steps(m, opt, it, max(2, steps * 256 // bs))
            wall.append(w)
            cpu.append(c)
    print(f"threads {threads}: median over {reps} reps of {steps} steps (x256/batch)")
    print(
        f"{'variant':26s} {'MMACs':>6s} {'wall ms':>8s} {'cpu ms':>7s} {'epoch wall s':>12s} "
        f"{'epoch cpu s':>11s}"
    )
    for name, (_, _, _, bs, wall, cpu) in setups.items():
        w, c = statistics.median(wall), statistics.median(cpu)
        net, kw, _ = SETS[which][name]
        per_epoch = 60000 // bs
        print(
            f"{name:26s} {macs_per_image(build(net, kw, False)) / 1e6:6.2f} {w:8.1f} {c:7.1f} "
            f"{w * per_epoch / 1e3:12.2f} {c * per_epoch / 1e3:11.2f}"
        )


if __name__ == "__main__":
    main(
        threads=int(sys.argv[1]) if len(sys.argv) > 1 else 1,
        which=sys.argv[2] if len(sys.argv) > 2 else "nets",
    )
