"""Which of the `fast` recipe's levers earn their place?

The `fast` recipe (one epoch of MNIST to ~99.1 % on a CPU) against variants that each undo one
lever: the learned stem instead of the frozen whitening one, no test-time augmentation, no label
smoothing, Adam's default betas, the batch of 256 it had before (lr 0.03), batch 512 (lr 0.05),
float32 where the recipe would use bf16 (CPUs with AMX; elsewhere the two variants are alike),
and bf16 forced on (where the CPU has AVX512-BF16 but no AMX, the recipe's own choice is float32).
Variants run interleaved by seed (seed 0 of each, then seed 1, ...) after one short warm-up run,
so machine drift and one-off kernel generation hit all alike; compare training seconds within one
run only.

Run: `.venv/bin/python research/fast_levers.py --seeds 3 --out research/results/`
(`--quick`: 10,000 training and 2,000 test images, 1 seed, 1 thread: a smoke test, not a measurement).
"""

from __future__ import annotations

import common

import cnnlab

LEARNED = {"stem": "learned", "widths": [12, 24, 64]}

# variant -> overrides of the fast recipe; each undoes one lever
VARIANTS = {
    "fast (whitening stem, tta 4)": {},
    "learned stem": {"model_kwargs": LEARNED},
    "tta 0": {"tta": 0},
    "label smoothing 0": {"label_smoothing": 0.0},
    "adam betas (0.9, 0.999)": {"adam_betas": (0.9, 0.999)},
    "batch 256, lr 0.03": {"batch_size": 256, "lr": 0.03},
    "batch 512, lr 0.05": {"batch_size": 512, "lr": 0.05},
    "float32 (bf16 off)": {"bf16": False},
    "bf16 on (also without AMX)": {"bf16": True},
}


def main() -> None:
    args = common.parser(__doc__, seeds=3).parse_args()
    subset = {"train_subset": 10_000, "test_subset": 2_000} if args.quick else {}
    seeds = 1 if args.quick else args.seeds
    threads = args.threads or (1 if args.quick else None)  # spinning threads stall on a busy machine
    base = {"device": "cpu", "threads": threads, **subset, **common.held_out(args)}
    common.warm_up(base)
    variants = {
        name: lambda seed, o=over: cnnlab.make_config("fast", seed=seed, **base, **o)
        for name, over in VARIANTS.items()
    }
    results = common.interleave(variants, seeds)
    common.report("fast_levers", __doc__.splitlines()[0], args, results)


if __name__ == "__main__":
    main()
