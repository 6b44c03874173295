"""E14: the `fast` recipe through cnnlab's fit vs the same settings in this harness, interleaved.

Checks that the integrated loop (train_one_epoch: running loss/accuracy sums, a report every
20 steps, the last short batch) neither loses accuracy nor adds time.
"""

import statistics
import sys
import time

import torch
from harness import Config, evaluate, train

from cnnlab.train import fit, make_config

cfg = Config(net="stride", net_kw=dict(c1=8, c2=24, c3=64, bn1=False), lr=0.03, label_smoothing=0.1)
seeds = [int(s) for s in sys.argv[1:]] or [0, 1]
rows = {"harness": [], "fit": []}
for seed in seeds:
    model, wall, cpu, _ = train(cfg, seed)
    rows["harness"].append((wall, cpu, evaluate(model, cfg, (0,))[0][0]))
    c0 = time.process_time()
    result = fit(make_config("fast", seed=seed, device="cpu"))
    rows["fit"].append((result.train_seconds, time.process_time() - c0, result.final["test_acc"]))
    for k, v in rows.items():
        print(
            f"  seed {seed} {k:8s} {v[-1][0]:6.2f} s wall  {v[-1][1]:6.2f} s cpu  "
            f"{100 * v[-1][2]:.2f} %",
            flush=True,
        )
for k, v in rows.items():
    print(
        f"{k:8s} median wall {statistics.median(r[0] for r in v):6.2f} s, median cpu "
        f"{statistics.median(r[1] for r in v):6.2f} s, "
        f"mean acc {100 * statistics.mean(r[2] for r in v):.2f} %"
    )
print("threads", torch.get_num_threads(), "load", open("/proc/loadavg").read().split()[:3])
