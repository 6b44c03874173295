"""E26: does an ensemble of *different* models beat three seeds of the `best` recipe (99.76 %)?

Trains three members through cnnlab's `fit`, each within 10 minutes on the 2-core CPU with
bf16, and scores every member and every ensemble (softmax averaged, each with TTA 8):
A = the `best` recipe (cnn width 32, rotations), B = `resnet` with the same augmentation and
optimiser for 30 epochs, C = the `best` recipe with whole-pixel shifts only (no rotation/scale).
Run: `PYTHONPATH=src python benchmarks/experiments/e26_diverse_ensemble.py`.

Measured 2026-12-01, 2-vCPU AMD EPYC (Zen 5), 2 threads (training seconds drifted up on this
VM during the run: A took 451 s here against 412 s in `bench best` an hour earlier):

    A best (cnn w32, rot)   99.76 %  451 s
    B resnet 30 ep, rot     99.65 %  429 s
    C best, shifts only     99.74 %  527 s
    A + B 99.74 %, A + C 99.74 %, B + C 99.74 %, A + B + C 99.73 %

Different architectures and augmentations help no more than different seeds (three seeds of
A: 99.76 %): these members share their last ~25 errors.
"""

import itertools
import json
import sys
import time

import torch

from cnnlab.train import evaluate, fit, load_batches, make_config

MEMBERS = {
    "A best (cnn w32, rot)": dict(seed=0),
    "B resnet 30 ep, rot": dict(model="resnet", model_kwargs={}, epochs=30, seed=1),
    "C best, shifts only": dict(rotate=0.0, scale=0.0, seed=2),
}


def main() -> None:
    torch.set_num_threads(2)
    probs, targets = {}, None
    for name, overrides in MEMBERS.items():
        config = make_config("best", device="cpu", **overrides)
        result = fit(config, None)
        _, test, _ = load_batches(config, torch.device("cpu"))
        ev = evaluate(result.model, test, tta=config.tta, return_outputs=True)
        probs[name], targets = ev["probs"], ev["targets"]
        print(f"{name}: {100 * ev['acc']:.2f} % in {result.train_seconds:.0f} s", flush=True)
    out = {}
    for r in (2, 3):
        for combo in itertools.combinations(probs, r):
            mean = torch.stack([probs[c] for c in combo]).mean(0)
            acc = float((mean.argmax(1) == targets).float().mean())
            out[" + ".join(c[0] for c in combo)] = acc
            print(f"ensemble {' + '.join(c[0] for c in combo)}: {100 * acc:.2f} %", flush=True)
    json.dump(out, sys.stdout if len(sys.argv) < 2 else open(sys.argv[1], "w"), indent=1)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n{time.perf_counter() - t0:.0f} s in all", file=sys.stderr)
