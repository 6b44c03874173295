"""E20: choosing the `best` recipe: 3-seed mean test accuracy of candidates, trained on a GPU.

Accuracy does not depend on where a recipe trains, and a GPU trains each of these in 5-17 s, so
candidates were screened on an H100 (2026-11-25) and only the winner timed on the 2-core CPU.
CPU cost per MNIST epoch of the `cnn` at 2 threads on the idle 2-core AMD EPYC: width 16 ~49 s,
width 24 ~92 s, width 32 ~150 s, so 10 minutes buys about 11 epochs of width 16.

Run: PYTHONPATH=src python benchmarks/experiments/e20_best_recipe_gpu.py [NAME ...]
Results (3-seed means, single model, final test accuracy with the config's TTA):

    cnn8-shift (the old best: Adam, 8 epochs, tta 4)      99.667
    cnn12-rot (+-10 deg, x0.9-1.1, 12 epochs)             99.673
    cnn16w32-rot (width 32, 16 epochs; ~40 min on CPU)   99.753
    resnet15-shift                                        99.653
    resnet15-rot                                          99.633
    w16-11-shift-tta8                                     99.700
    w16-11-rot8-lr01                                      99.703
    w16-11-shift-lr01                                     99.693
    w24-6-shift                                           99.690
    w24-6-rot                                             99.693
    w20-8-shift-lr01                                      99.713
    w16-11-shift-wd (AdamW wd 0.05, tta 4)                99.717
    A-wd-lr01                                             99.703
    B-wd-tta8 (AdamW wd 0.05, tta 8: the `best` recipe)   99.730
    C-wd-rot-lr01                                         99.697
    E-wd01 (wd 0.1)                                       99.700
    Fashion-MNIST, the best recipe with tta 4, lr 0.01     93.630
    Fashion-MNIST, the best recipe with tta 4             93.593
    Fashion-MNIST, + horizontal flips, tta 8              93.320 (flips hurt; not kept)
    Fashion-MNIST, the `best` recipe variants that fit 10 CPU minutes (tta 8):
      label smoothing 0 93.590, lr 0.01 93.530, width 24 x 6 epochs 93.433, width 32 x 4 93.343
    Fashion-MNIST, width 32 x 16 epochs (~40 min on the CPU)                    94.603
    MNIST, width 32 x 4 epochs (fits 10 CPU minutes)                            99.680
"""
# ruff: noqa: E501

import statistics
import sys
import time

from cnnlab.train import fit, make_config

W = dict(recipe="best", epochs=11, optimizer="adamw", weight_decay=0.05, tta=4)
CANDIDATES = {
    "cnn8-shift": dict(recipe="best", epochs=8, optimizer="adam", weight_decay=0.0, tta=4),
    "cnn12-rot": dict(recipe="best", epochs=12, optimizer="adam", weight_decay=0.0, tta=4, rotate=10, scale=0.1),
    "cnn16w32-rot": dict(recipe="best", epochs=16, optimizer="adam", weight_decay=0.0, tta=4, rotate=10, scale=0.1, model_kwargs={"width": 32}),
    "resnet15-shift": dict(recipe="best", model="resnet", epochs=15, optimizer="adam", weight_decay=0.0, tta=4),
    "resnet15-rot": dict(recipe="best", model="resnet", epochs=15, optimizer="adam", weight_decay=0.0, tta=4, rotate=10, scale=0.1),
    "w16-11-shift-tta8": dict(recipe="best", epochs=11, optimizer="adam", weight_decay=0.0, tta=8),
    "w16-11-rot8-lr01": dict(recipe="best", epochs=11, optimizer="adam", weight_decay=0.0, tta=4, rotate=8, scale=0.05, lr=0.01),
    "w16-11-shift-lr01": dict(recipe="best", epochs=11, optimizer="adam", weight_decay=0.0, tta=4, lr=0.01),
    "w24-6-shift": dict(recipe="best", epochs=6, optimizer="adam", weight_decay=0.0, tta=4, model_kwargs={"width": 24}),
    "w24-6-rot": dict(recipe="best", epochs=6, optimizer="adam", weight_decay=0.0, tta=4, rotate=10, scale=0.1, model_kwargs={"width": 24}),
    "w20-8-shift-lr01": dict(recipe="best", epochs=8, optimizer="adam", weight_decay=0.0, tta=4, lr=0.01, model_kwargs={"width": 20}),
    "w16-11-shift-wd": dict(W),
    "A-wd-lr01": dict(W, lr=0.01),
    "B-wd-tta8": dict(W, tta=8),
    "C-wd-rot-lr01": dict(W, lr=0.01, rotate=8, scale=0.05),
    "E-wd01": dict(W, weight_decay=0.1),
    "F-fashion-lr01": dict(W, lr=0.01, dataset="fashion-mnist"),
    "G-fashion": dict(W, dataset="fashion-mnist"),
}

for name in sys.argv[1:] or CANDIDATES:
    settings = dict(CANDIDATES[name])
    recipe = settings.pop("recipe")
    accs = []
    for seed in range(3):
        t0 = time.perf_counter()
        result = fit(make_config(recipe, seed=seed, device="cuda", **settings))
        accs.append(result.final["test_acc"])
        print(f"{name} seed {seed}: {100 * accs[-1]:.2f} % ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"== {name}: mean {100 * statistics.mean(accs):.3f} %", flush=True)
