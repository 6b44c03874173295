"""How often does the lesson's exact CNN stay at chance, and do cnnlab's defaults fix it?

The lesson's CNN has a single channel in its second conv (flatten size 16), trained with Adam at
a constant lr 0.01 on [0, 1] inputs (`--no-normalize`). On some seeds Adam's first steps push
that channel's pre-activation below 0 for every image: the ReLU passes no gradient again and the
model predicts one class (11.35 % on MNIST). `fit` stops such a run after its first epoch with
TrainingDivergedError; this script counts those runs ("stuck") per variant, one epoch per seed:
the lesson's loop, the same net with the one-cycle warm-up, and the `lesson-cnn` recipe's
channels (16, 32) at the lesson's constant rate.

Run: `.venv/bin/python research/lesson_cnn_collapse.py --seeds 8 --out research/results/`
(`--quick`: 6,400 training and 2,000 test images, seeds 0-1, 1 thread: a smoke test).
"""

from __future__ import annotations

import common

import cnnlab

LESSON = {"model_kwargs": {"channels": [6, 1]}, "normalize": False, "epochs": 1}

# variant -> overrides of the lesson-cnn recipe
VARIANTS = {
    "lesson's loop: (6, 1), constant lr": {**LESSON, "schedule": "constant"},
    "(6, 1), one-cycle warm-up": {**LESSON, "schedule": "onecycle"},
    "channels (16, 32), constant lr": {"normalize": False, "epochs": 1, "schedule": "constant"},
}


def main() -> None:
    args = common.parser(__doc__, seeds=8).parse_args()
    subset = {"train_subset": 6_400, "test_subset": 2_000} if args.quick else {}
    seeds = 2 if args.quick else args.seeds
    threads = args.threads or (1 if args.quick else None)  # spinning threads stall on a busy machine
    base = {"device": "cpu", "threads": threads, **subset, **common.held_out(args)}
    variants = {
        name: lambda seed, o=over: cnnlab.make_config("lesson-cnn", seed=seed, **base, **o)
        for name, over in VARIANTS.items()
    }
    results = common.interleave(variants, seeds)
    common.report("lesson_cnn_collapse", __doc__.splitlines()[0], args, results)
    for name, res in results.items():
        stuck = [r["seed"] for r in res["runs"] if r["stuck"]]
        print(f"{name}: stuck at chance on seeds {stuck or 'none'}")


if __name__ == "__main__":
    main()
