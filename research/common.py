"""Shared plumbing of the research scripts: provenance, one run, the interleaved loop, the report."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

import cnnlab
from cnnlab.errors import TrainingDivergedError

OUT = Path(__file__).resolve().parent / "results"


def parser(doc: str, seeds: int) -> argparse.ArgumentParser:
    """The flags every script takes; `doc` is its module docstring."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--seeds", type=int, default=seeds, help=f"seeds 0..N-1 per variant (default: {seeds})"
    )
    p.add_argument("--threads", type=int, help="CPU threads (default: one per core; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="a small subset, 1 seed, 1 thread: a smoke test")
    p.add_argument("--out", type=Path, default=OUT, help=f"folder for NAME.json (default: {OUT})")
    p.add_argument(
        "--val-split",
        type=float,
        default=5000,
        help="training images held out to judge the variants on; 0: judge on test (default: 5000)",
    )
    return p


def warm_up(settings: dict) -> None:
    """One short untimed run: oneDNN generates its kernels once per process."""
    settings = {k: v for k, v in settings.items() if k not in ("val_split", "train_subset")}
    fit_one(cnnlab.make_config("fast", train_subset=4096, **settings))


def held_out(args: argparse.Namespace) -> dict:
    """The validation split the variants are judged on (smaller for --quick runs)."""
    if not args.val_split:
        return {}
    return {"val_split": min(args.val_split, 1000) if args.quick else args.val_split}


def machine() -> dict:
    """Where the numbers were measured: CPU model and flags, cores, torch, threads, load."""
    import torch

    text = Path("/proc/cpuinfo").read_text() if os.path.exists("/proc/cpuinfo") else ""
    cpu = {
        k: (re.search(rf"^{k}\s*:\s*(.*)$", text, re.M) or ["", ""])[1] for k in ("model name", "flags")
    }
    env = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {
        "cpu": cpu["model name"] or platform.processor(),
        "cpu_flags": cpu["flags"].split(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "env": env,
    }


def fit_one(config: cnnlab.TrainConfig) -> dict:
    """Train once in memory; a run stopped at chance keeps its last epoch's figures."""
    last: dict = {}
    try:
        result = cnnlab.fit(config, callback=lambda e: e["event"] == "epoch_end" and last.update(e))
        final, seconds, stuck = result.final, result.train_seconds, None
    except TrainingDivergedError as e:
        final, seconds, stuck = last, last.get("seconds"), str(e)
    return {
        "seed": config.seed,
        "val_acc": final.get("val_acc"),
        "test_acc": final.get("test_acc"),
        "train_s": seconds,
        "stuck": stuck,
    }


def interleave(
    variants: dict[str, Callable[[int], cnnlab.TrainConfig]],
    seeds: int,
    run: Callable[[str, cnnlab.TrainConfig], dict] | None = None,
) -> dict:
    """Seed 0 of every variant, then seed 1, ...: machine drift hits all alike (run: fit_one)."""
    out = {name: {"config": dataclasses.asdict(make(0)), "runs": []} for name, make in variants.items()}
    for seed in range(seeds):
        for name, make in variants.items():
            out[name]["runs"].append(run(name, make(seed)) if run else fit_one(make(seed)))
    return out


def summary(runs: list[dict]) -> dict:
    """Mean and min accuracy (validation when the runs held a split out, else test), median
    training seconds, runs stuck at chance."""
    key = "val_acc" if any(r.get("val_acc") is not None for r in runs) else "test_acc"
    accs = [r[key] for r in runs if r[key] is not None]
    secs = [r["train_s"] for r in runs if r["train_s"] is not None]
    mean, med = (statistics.mean(accs) if accs else None), (statistics.median(secs) if secs else None)
    return {
        "acc_on": key.removesuffix("_acc"),
        "acc_mean": mean,
        "acc_min": min(accs, default=None),
        "train_s_median": med,
        "stuck": sum(r["stuck"] is not None for r in runs),
        "n": len(runs),
    }


def report(name: str, question: str, args: argparse.Namespace, variants: dict) -> Path:
    """Print one row per variant and write OUT/NAME.json with its provenance."""
    print(f"{'variant':38s}  n  acc mean %  min %  median s  stuck")
    for v, res in variants.items():
        s = res["summary"] = summary(res["runs"])
        pct = lambda x: f"{100 * x:.2f}" if x is not None else "-"  # noqa: E731
        secs = f"{s['train_s_median']:.2f}" if s["train_s_median"] is not None else "-"
        accs = f"{pct(s['acc_mean']):>11s} {pct(s['acc_min']):>6s}"
        print(f"{v:38s} {s['n']:2d} {accs} {secs:>9s} {s['stuck']:6d}")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    payload = {
        "script": f"research/{name}.py",
        "question": question,
        "commit": commit,
        "date": now,
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "variants": variants,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(f"wrote {path}")
    return path
