"""E21: the CUDA-graph lever: the `fast` recipe (bf16) on a GPU, 5 seeds with and without
recorded CUDA graphs, interleaved in one process after one warm-up run.

H100 80GB HBM3, torch 2.11, 2026-11-25: with graphs 0.189 s mean (median 0.142) -> 99.06 %;
without 0.886 s mean (median 0.892) -> 99.08 %. A step of this small net is ~100 kernel
launches from Python (~3.7 ms); replayed from a graph it is one launch (~0.5 ms).

Run: PYTHONPATH=src python benchmarks/experiments/e21_cuda_graphs.py
"""

import statistics

from cnnlab.train import fit, make_config

fit(make_config("fast", device="cuda", bf16=True, train_subset=4096, test_subset=1000))  # warm-up
results = {True: [], False: []}
for seed in range(5):
    for graphs in (True, False):
        r = fit(make_config("fast", device="cuda", bf16=True, seed=seed, cuda_graphs=graphs))
        results[graphs].append((r.train_seconds, r.final["test_acc"]))
for graphs, rows in results.items():
    t = [s for s, _ in rows]
    acc = statistics.mean(a for _, a in rows)
    print(f"cuda_graphs={graphs}: train_s mean {statistics.mean(t):.3f} median "
          f"{statistics.median(t):.3f} min {min(t):.3f} max {max(t):.3f}; "
          f"test acc mean {100 * acc:.2f} %")
