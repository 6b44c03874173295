"""How should idle OpenMP threads wait: spin (libgomp's default) or sleep (PASSIVE)?

OpenMP reads its environment once per process, so each policy trains in a fresh
`python -m cnnlab train` process: the `fast` recipe and the lesson MLP (1 epoch), at 2 threads,
on the first 15,000 training images. Training seconds come from the run folder's metrics.json.
Setting GOMP_SPINCOUNT (libgomp's default: 300000) or OMP_WAIT_POLICY bypasses the `cnnlab`
command's own choice (PASSIVE only when the 1-minute load average says the cores are taken);
"cnnlab's choice" sets neither.
`--load` first starts two pure-Python busy loops: two other jobs on a 2-core machine.

Run: `.venv/bin/python research/omp_wait_policy.py --seeds 3 --out research/results/` (add `--load`)
(`--quick`: the fast recipe only, on 3,000 training and 1,000 test images, 1 seed: a smoke test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import common

import cnnlab

POLICIES = {
    "PASSIVE (sleep)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=100000": {"GOMP_SPINCOUNT": "100000"},
    "spin (GOMP_SPINCOUNT=300000)": {"GOMP_SPINCOUNT": "300000"},
    "cnnlab's choice (neither set)": {},
    "ACTIVE (spin, never sleep)": {"OMP_WAIT_POLICY": "ACTIVE"},
}
# recipe -> overrides; `--recipes` picks some (default: fast and the lesson MLP)
RECIPES = {
    "fast": {},
    "lesson-mlp": {"epochs": 1},
    "quick": {"epochs": 1, "bf16": False},
    "reference": {},
}


def train_in_child(config: cnnlab.TrainConfig, recipe: str, policy: dict) -> dict:
    """One `cnnlab train` process under `policy`; its seconds and accuracy from the run folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    with tempfile.TemporaryDirectory() as tmp:
        flags = [
            "--recipe",
            recipe,
            "--seed",
            config.seed,
            "--threads",
            config.threads,
            "--device",
            "cpu",
            "--epochs",
            config.epochs,
            "--train-subset",
            config.train_subset,
            "--out",
            f"{tmp}/run",
        ]
        if config.test_subset:
            flags += ["--test-subset", config.test_subset]
        if config.bf16 is False:
            flags.append("--no-bf16")
        cmd = [sys.executable, "-m", "cnnlab", "train", "--quiet", *map(str, flags)]
        subprocess.run(cmd, env={**env, **policy}, check=True, capture_output=True, text=True)
        final = json.loads(Path(tmp, "run", "metrics.json").read_text())[-1]
    return {
        "seed": config.seed,
        "test_acc": final["test_acc"],
        "train_s": final["seconds"],
        "stuck": None,
    }


def main() -> None:
    p = common.parser(__doc__, seeds=3)
    p.add_argument("--load", action="store_true", help="beside two busy processes")
    p.add_argument("--recipes", default="fast,lesson-mlp", help=f"some of: {', '.join(RECIPES)}")
    p.add_argument("--policies", help="run only the policies whose name contains one of these '|' texts")
    p.add_argument("--train-subset", type=int, default=15_000, help="training images (default: 15000)")
    args = p.parse_args()
    subset = (
        {"train_subset": 3_000, "test_subset": 1_000}
        if args.quick
        else {"train_subset": args.train_subset}
    )
    seeds, recipes = (1, ["fast"]) if args.quick else (args.seeds, args.recipes.split(","))
    base = {"device": "cpu", "threads": args.threads or 2, **subset}
    variants, where = {}, {}
    for recipe in recipes:
        for name, policy in POLICIES.items():
            if args.policies and not any(part in name for part in args.policies.split("|")):
                continue
            label = f"{recipe}, {name}"
            where[label] = (recipe, policy)
            variants[label] = lambda s, r=recipe: cnnlab.make_config(r, seed=s, **{**base, **RECIPES[r]})
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * args.load)]
    try:
        results = common.interleave(variants, seeds, run=lambda v, c: train_in_child(c, *where[v]))
    finally:
        for proc in busy:
            proc.kill()
    for label, res in results.items():
        res["env"] = where[label][1]
    common.report("omp_wait_policy", __doc__.splitlines()[0], args, results)


if __name__ == "__main__":
    main()
