"""The nudge's size: median smallest L-infinity change (PGD, bisection) that changes the answer,
over the first N MNIST test digits, for each run folder given.

    python benchmarks/nudge.py runs/demo/mlp runs/demo/cnn [--n 100]
"""

from __future__ import annotations

import argparse

import torch

from cnnlab.data.datasets import load_dataset
from cnnlab.robustness import smallest_linf_nudge
from cnnlab.runs import load_run


def main() -> None:
    """Print one line per run: the median, quartiles and how many were fooled at all."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    torch.manual_seed(0)
    for path in args.runs:
        run = load_run(path)
        test = load_dataset(run.dataset, "test")
        x = test.images[: args.n].float() / 255
        x = x[:, None] if x.dim() == 3 else x
        with torch.inference_mode():
            labels = run.model((x - run.mean[0]) / run.std[0]).argmax(1)
        nudge = smallest_linf_nudge(run.model, x, labels, run.mean, run.std)
        found = nudge.linf[nudge.found]
        q = (
            torch.quantile(found, torch.tensor([0.25, 0.5, 0.75])).tolist()
            if len(found)
            else [float("nan")] * 3
        )
        print(
            f"{path}: {run.model_name}: median L-inf {q[1]:.4f} (quartiles {q[0]:.4f}..{q[2]:.4f}), "
            f"answer changed on {int(nudge.found.sum())}/{len(x)} digits"
        )


if __name__ == "__main__":
    main()
