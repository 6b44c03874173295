"""Running the benchmarks: time to 99 % on MNIST, the lesson's loop, batch speed, the best recipe.

`speedrun` trains a recipe (`fast` by default) once per seed through the same `fit` that
`cnnlab train` uses and reports, per seed and as mean/median/min/max, the training wall time
(`FitResult.train_seconds`: first step to final weights) and the test accuracy, beside one epoch
of the lesson's own loop (torchvision MNIST + ToTensor + DataLoader at batch 64, the lesson's
CNN, Adam lr 0.01) and what the training time leaves out (process start, data load, warm-up).
`batches_benchmark` compares one epoch of `InMemoryBatches` with torchvision's DataLoader +
ToTensor; `best_run` trains the `best` recipe per seed and their ensemble. Every result carries
`machine` (`cnnlab.machine.machine_info`): timings mean nothing without it. Never prints.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

import torch

from cnnlab.bench.baselines import lesson_baseline, torchvision_split
from cnnlab.errors import ConfigError
from cnnlab.machine import load_average, machine_info

Callback = Callable[[dict], None]

EXCLUDED_WHAT = (
    "process start (python + import torch, cnnlab), one-off data load "
    "and verification, one short warm-up run per process (kernel "
    "choice and code generation for each layer shape on the device; "
    "on CUDA also the context), and fit's own overhead: model "
    "build, per-epoch evaluation, collapse check"
)


def stats(values: list[float]) -> dict:
    """mean, median, min, max of a list of numbers."""
    return {
        "mean": statistics.mean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def process_start_seconds() -> float:
    """Wall seconds for a fresh Python to import torch and cnnlab's training code."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import cnnlab.train"], check=True, capture_output=True)
    return time.perf_counter() - t0


def data_load_seconds(dataset: str, root: str | None) -> float:
    """Seconds to read and verify both splits into memory (once per process; cache cleared)."""
    from cnnlab.data import datasets

    datasets.clear_cache()
    t0 = time.perf_counter()
    datasets.load_dataset(dataset, "train", root)
    datasets.load_dataset(dataset, "test", root)
    return time.perf_counter() - t0


def _excluded_seconds(recipe: str, overrides: dict) -> dict:
    """What the training time leaves out: process start, data load, one warm-up run."""
    from cnnlab.config import make_config
    from cnnlab.train import fit

    excluded = {
        "process_start_s": process_start_seconds(),
        "data_load_s": data_load_seconds(overrides["dataset"], overrides["data_root"]),
    }
    # once a process: on CUDA the context, cuDNN's kernel choice and the allocator; on a CPU
    # oneDNN's just-in-time kernels for each layer shape
    t0 = time.perf_counter()
    subset = overrides["train_subset"]
    warm = dict(overrides, train_subset=min(subset or 4096, 4096), test_subset=1000)
    fit(make_config(recipe, seed=0, **warm), None)
    excluded["device_warmup_s"] = time.perf_counter() - t0
    return excluded


def _timed_seed(recipe: str, seed: int, overrides: dict, callback: Callback | None):
    """Train one seed; (its row of timings and accuracy, its config)."""
    from cnnlab.config import make_config
    from cnnlab.data.factory import load_batches
    from cnnlab.evaluation import evaluate
    from cnnlab.train import fit

    config = make_config(recipe, seed=seed, **overrides)
    t0 = time.perf_counter()
    result = fit(config, None, callback=callback)
    fit_s = time.perf_counter() - t0
    test_batches = load_batches(config, next(result.model.parameters()).device).test
    t0 = time.perf_counter()
    evaluate(result.model, test_batches, tta=config.tta)  # the cost of one test pass
    eval_s = time.perf_counter() - t0
    row = {
        "seed": seed,
        "train_s": result.train_seconds,
        "test_acc": result.final["test_acc"],
        **({"test_acc_one_pass": result.final["test_acc_one_pass"]} if config.tta else {}),
        "eval_s": eval_s,
        "fit_overhead_s": fit_s - result.train_seconds,
    }
    return row, config


def _one_pass_stats(rows: list[dict]) -> dict:
    """With TTA, the test accuracy of each image read once (as predict reads it), beside it."""
    if not all("test_acc_one_pass" in r for r in rows):
        return {}
    return {"test_acc_one_pass": stats([r["test_acc_one_pass"] for r in rows])}


def _speedrun_result(
    recipe: str, device: str, target: float, rows: list[dict], config, excluded: dict
) -> dict:
    """The speedrun's JSON-ready dict, before the baseline and the load averages."""
    overhead = statistics.mean(r["fit_overhead_s"] for r in rows)
    return {
        "benchmark": "speedrun",
        "recipe": recipe,
        "device": device,
        "machine": machine_info(),
        "config": asdict(config),
        "threads": torch.get_num_threads(),
        "seeds": rows,
        "train_s": stats([r["train_s"] for r in rows]),
        "test_acc": stats([r["test_acc"] for r in rows]),
        **_one_pass_stats(rows),
        "eval_s": stats([r["eval_s"] for r in rows]),
        "target": target,
        "reached_target": statistics.mean(r["test_acc"] for r in rows) >= target,
        "train_time_is": "wall seconds from the first training step to the final weights "
        "(data already in memory, model built)",
        "excluded": {**excluded, "fit_overhead_s_mean": overhead, "what": EXCLUDED_WHAT},
    }


def _roofline(config, train_seconds: float) -> dict:
    """The recipe's epoch against the cores' GEMM rate (see bench/roofline.py)."""
    from cnnlab.bench.roofline import roofline
    from cnnlab.data.factory import load_batches
    from cnnlab.devices import resolve_device, use_bf16
    from cnnlab.models import count_macs, get_model

    splits = load_batches(config, torch.device("cpu"))
    model = get_model(
        config.model, splits.info.image_shape, splits.info.num_classes, **config.model_kwargs
    )
    macs = count_macs(model, splits.info.image_shape)
    bf16 = use_bf16(config.bf16, resolve_device(config.device))
    return roofline(macs, splits.train.num_samples, train_seconds, config.epochs, bf16)


def _seeds(recipe: str, seeds: int, overrides: dict, reference: bool, callback):
    """Each seed of the recipe, then (interleaved) of the reference: (rows, reference rows, config)."""
    emit = callback or (lambda event: None)
    rows, ref_rows, config = [], [], None
    for seed in range(seeds):
        row, config = _timed_seed(recipe, seed, overrides, callback)
        rows.append(row)
        emit({"event": "seed_end", **row, "seeds": seeds})
        if reference:
            ref_rows.append(_timed_seed("reference", seed, overrides, None)[0])
    return rows, ref_rows, config


def _versus_reference(rows: list[dict], ref_rows: list[dict]) -> dict:
    """The published recipe's seeds, summarised like the recipe's own, and the speedup over it:
    of the means, and of each seed's pair, which ran back to back (the host's drift shows)."""
    ref = {
        "what": "the published GPU speed recipe as published (conv24/conv32 net, Adam betas "
        "(0.7, 0.9), one-cycle peak 0.01, batch 256, one epoch, float32 NCHW) through cnnlab's fit",
        "recipe": "reference",
        "seeds": ref_rows,
        "train_s": stats([r["train_s"] for r in ref_rows]),
        "test_acc": stats([r["test_acc"] for r in ref_rows]),
    }
    pairs = [r["train_s"] / m["train_s"] for m, r in zip(rows, ref_rows, strict=True)]
    return {
        "reference": ref,
        "speedup_vs_reference": ref["train_s"]["mean"] / statistics.mean(m["train_s"] for m in rows),
        "speedup_per_seed": stats(pairs),
    }


def _check_speedrun(seeds: int, target: float) -> None:
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, not {seeds}")
    if not 0 < target <= 1:
        raise ConfigError(f"--target is a fraction in (0, 1], not {target}")


def speedrun(
    seeds: int = 5,
    target: float = 0.99,
    device: str = "cpu",
    recipe: str = "fast",
    dataset: str = "mnist",
    data_root: str | None = None,
    threads: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    baseline: bool = True,
    reference: bool = True,
    commands: int = 0,
    callback: Callback | None = None,
) -> dict:
    """Train `recipe` once per seed (0..seeds-1); time it, test it, compare with the baselines.

    Args:
        seeds, target: runs (seeds 0, 1, ...), and the mean test accuracy to reach.
        device: cpu or cuda (on cuda bf16 autocast is switched on; the data lives on the GPU).
        recipe: a train.RECIPES name.
        dataset, data_root, threads: what to train on, and with how many CPU threads.
        train_subset, test_subset: first N images only (tests; the figures need the full sets).
        baseline: also time one epoch of the lesson's loop with the same threads.
        reference: also train the published speed recipe per seed, interleaved, timed alike.
        commands: time whole `cnnlab train` / `predict` / `serve` commands this many times (0: not).
        callback: every fit event, plus "seed_end", "baseline_start", "commands_start".
    Returns:
        A JSON-ready dict: machine, config, per-seed runs and their statistics, what the
        training time excludes, the baselines and speedups, the roofline.
    """
    _check_speedrun(seeds, target)
    emit = callback or (lambda event: None)
    overrides = dict(device=device, dataset=dataset, data_root=data_root, threads=threads)
    overrides.update(train_subset=train_subset, test_subset=test_subset)
    if device.startswith("cuda"):
        overrides["bf16"] = True  # tensor cores; fit falls back to fp32 where unsupported
    load_before = load_average()
    excluded = _excluded_seconds(recipe, overrides)
    if reference:
        _excluded_seconds("reference", overrides)  # its own layer shapes' kernels, untimed
    rows, ref_rows, config = _seeds(recipe, seeds, overrides, reference, callback)
    out = _speedrun_result(recipe, device, target, rows, config, excluded)
    out["load_average_before"] = load_before
    if device == "cpu":
        out["roofline"] = _roofline(config, out["train_s"]["median"])
    if reference:
        out.update(_versus_reference(rows, ref_rows))
    if baseline:
        emit({"event": "baseline_start"})
        torch.set_num_threads(out["threads"])  # the same threads as the recipe: a fair ratio
        out["baseline"] = lesson_baseline(
            dataset, data_root, train_subset=train_subset, test_subset=test_subset, device=device
        )
        out["speedup_vs_baseline"] = out["baseline"]["train_s"] / out["train_s"]["mean"]
    if commands:
        emit({"event": "commands_start"})
        out["commands"] = _command_result(recipe, overrides, commands)
    return {**out, "load_average_after": load_average()}


def _command_result(recipe: str, overrides: dict, runs: int) -> dict:
    """Whole-command wall times (statistics per command) for the speedrun's settings."""
    from cnnlab.bench.commands import command_seconds

    names = {"device": "--device", "threads": "--threads", "data_root": "--root"}
    names.update(train_subset="--train-subset", test_subset="--test-subset", dataset="--dataset")
    flags = [
        arg
        for key, flag in names.items()
        if overrides.get(key) is not None
        for arg in (flag, str(overrides[key]))
    ]
    timings = command_seconds(recipe, flags, runs)
    return {
        "what": "wall seconds from launch to exit of fresh processes: python -c 'import torch', "
        f"cnnlab train --recipe {recipe} (and the training seconds it reported), "
        "cnnlab predict RUN one.png, cnnlab serve RUN until /healthz answers",
        "runs": runs,
        **{key: stats(values) for key, values in timings.items()},
    }


def batches_benchmark(
    dataset: str = "mnist",
    data_root: str | None = None,
    batch_size: int = 64,
    max_batches: int | None = None,
    threads: int | None = 1,
) -> dict:
    """Images/s of one epoch of InMemoryBatches vs torchvision's dataset + ToTensor + DataLoader.

    Both shuffle and give normalised float batches of the same images; the DataLoader runs as
    the lesson wrote it (no workers), plus the Normalize a real pipeline adds. One thread by
    default: a batch of 64 is too small to share, and on a busy machine a second OpenMP thread
    makes every op wait for a descheduled partner (benchmarks/BENCHMARKS.md).
    """
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _batches_benchmark(dataset, data_root, batch_size, max_batches)
    finally:
        torch.set_num_threads(threads_before)  # the next benchmark gets the process's default


def _epoch_seconds(batches, n: int) -> tuple[float, int]:
    """Seconds to draw `n` images from `batches`, and how many were drawn."""
    seen, t0 = 0, time.perf_counter()
    for x, _ in batches:
        seen += len(x)
        if seen >= n:
            break
    return time.perf_counter() - t0, seen


def _batches_benchmark(
    dataset: str, data_root: str | None, batch_size: int, max_batches: int | None
) -> dict:
    """The two paths timed at the threads the caller set."""
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from cnnlab.data.batches import InMemoryBatches
    from cnnlab.data.datasets import load_dataset

    ds = load_dataset(dataset, "train", data_root)
    info = ds.info
    n = len(ds) if max_batches is None else min(len(ds), max_batches * batch_size)
    fast = InMemoryBatches(ds.images, ds.targets, batch_size, info.mean, info.std, shuffle=True)
    fast_s, fast_n = _epoch_seconds(fast, n)
    tv = torchvision_split(dataset, True, data_root, None)
    tv.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(info.mean, info.std)])
    slow_s, slow_n = _epoch_seconds(DataLoader(tv, batch_size=batch_size, shuffle=True), n)
    fast_ips, slow_ips = fast_n / fast_s, slow_n / slow_s
    what = "torchvision dataset + ToTensor + Normalize, DataLoader"
    what += f" (batch {batch_size}, shuffle, no workers)"
    return {
        "benchmark": "batches",
        "dataset": dataset,
        "batch_size": batch_size,
        "images": n,
        "machine": machine_info(),
        "threads": torch.get_num_threads(),
        "in_memory": {"seconds": fast_s, "images": fast_n, "images_per_s": fast_ips},
        "dataloader": {"seconds": slow_s, "images": slow_n, "images_per_s": slow_ips, "what": what},
        "speedup": fast_ips / slow_ips,
    }


def best_run(
    seeds: int = 3,
    ensemble: int = 3,
    dataset: str = "mnist",
    data_root: str | None = None,
    recipe: str = "best",
    device: str = "cpu",
    threads: int | None = None,
    epochs: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    callback: Callback | None = None,
) -> dict:
    """Train `recipe` per seed; report each model and the ensemble of the first `ensemble` ones.

    The ensemble averages the models' softmax outputs (each with the recipe's test-time
    augmentation) over the test set.
    """
    from cnnlab.config import make_config
    from cnnlab.data.factory import load_batches
    from cnnlab.evaluation import evaluate
    from cnnlab.train import fit

    if seeds < 1 or not 0 <= ensemble <= seeds:
        raise ConfigError(f"need seeds >= 1 and 0 <= ensemble <= seeds, not {seeds}, {ensemble}")
    emit = callback or (lambda event: None)
    overrides = dict(dataset=dataset, data_root=data_root, device=device, threads=threads, epochs=epochs)
    overrides.update(train_subset=train_subset, test_subset=test_subset)
    load_before = load_average()
    rows, probs, targets, config = [], [], None, None
    for seed in range(seeds):
        config = make_config(recipe, seed=seed, **overrides)
        result = fit(config, None, callback=callback)
        test_batches = load_batches(config, next(result.model.parameters()).device).test
        ev = evaluate(result.model, test_batches, tta=config.tta, return_outputs=True)
        probs.append(ev["probs"])
        targets = ev["targets"]
        row = {"seed": seed, "train_s": result.train_seconds, "test_acc": ev["acc"]}
        rows.append(row)
        emit({"event": "seed_end", **row, "seeds": seeds})
    out = {"benchmark": "best", "recipe": recipe, "dataset": dataset, "device": device}
    out.update(machine=machine_info(), config=asdict(config), threads=torch.get_num_threads())
    out.update(seeds=rows, train_s=stats([r["train_s"] for r in rows]))
    out.update(test_acc=stats([r["test_acc"] for r in rows]), load_average_before=load_before)
    if ensemble:
        mean_probs = torch.stack(probs[:ensemble]).mean(0)  # (N, classes)
        acc = float((mean_probs.argmax(1) == targets).float().mean())
        out["ensemble"] = {"models": ensemble, "test_acc": acc}
    return out
