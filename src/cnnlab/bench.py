"""Reproducible benchmarks (issue 7): time to 99 % on MNIST, the lesson's loop, batch speed.

`speedrun` trains a recipe (`fast` by default) once per seed through the same `fit` that
`cnnlab train` uses and reports, per seed and as mean/median/min/max, the training wall time
(from the first step to the final weights: `FitResult.train_seconds`) and the test accuracy. In
the same process it measures the lesson's own loop for one epoch (torchvision MNIST + ToTensor +
DataLoader at batch 64, the lesson's CNN, Adam lr 0.01) and gives the ratio. What the training
time leaves out is measured too and reported beside it: process start (Python + torch import),
the one-off data load, the per-epoch evaluation and the time to build the model.

`batches` compares one epoch of `InMemoryBatches` with torchvision's DataLoader + ToTensor
(issue 2). `best` trains the `best` recipe per seed and the ensemble of those models. Every
result dict carries `machine` (CPU model, cores, flags, torch, threads, load average) because
timings mean nothing without it. This module never prints; callbacks get progress dicts.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from cnnlab import runs
from cnnlab.errors import ConfigError

Callback = Callable[[dict], None]

# CPU flags that decide which kernels torch can use.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
RESULT_FILES = {
    "speedrun": "speedrun-{device}.json",
    "batches": "batches.json",
    "best": "best-{dataset}.json",
}


# --- the machine -------------------------------------------------------------------------------


def machine_info() -> dict:
    """CPU model, cores, relevant flags, torch version and threads, load average, GPU if any."""
    model, flags, family = platform.processor() or platform.machine(), set(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name":
                model = value
            elif key == "flags":
                flags = set(value.split())
            elif key in ("cpu family", "model"):  # e.g. AMD family 25 model 1: Zen 3 (Milan)
                family[key.replace(" ", "_")] = value
    except OSError:  # not Linux: the model from platform is all we have
        pass
    info = {
        "cpu": model,
        **family,
        "cores": os.cpu_count(),
        "flags": [f for f in RELEVANT_FLAGS if f in flags],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        # how idle OpenMP threads wait (cnnlab.cli.choose_omp_wait_policy): it moves timings
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (spin, then sleep)"),
        "python": platform.python_version(),
        "load_average": _load_average(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def stats(values: list[float]) -> dict:
    """mean, median, min, max of a list of numbers."""
    return {"mean": statistics.mean(values), "median": statistics.median(values),
            "min": min(values), "max": max(values)}  # fmt: skip


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


# --- the lesson's loop, the baseline -------------------------------------------------------------

TORCHVISION_CLASSES = {"MNIST": "MNIST", "FashionMNIST": "FashionMNIST"}


def _torchvision_split(dataset: str, train: bool, root: str | None, subset: int | None):
    """torchvision's own dataset class over cnnlab's verified files, with ToTensor."""
    from torch.utils.data import Subset
    from torchvision import datasets as tv_datasets
    from torchvision import transforms

    from cnnlab.data.datasets import default_root, fetch_dataset, get_dataset_info

    info = get_dataset_info(dataset)
    if info.folder not in TORCHVISION_CLASSES:
        raise ConfigError(f"the lesson baseline needs mnist or fashion-mnist, not {dataset!r}")
    fetch_dataset(dataset, root)  # verified raw files under root/<folder>/raw
    cls = getattr(tv_datasets, TORCHVISION_CLASSES[info.folder])
    ds = cls(str(root or default_root()), train=train, transform=transforms.ToTensor(), download=False)
    return Subset(ds, range(min(subset, len(ds)))) if subset else ds


def lesson_baseline(
    dataset: str = "mnist",
    root: str | None = None,
    epochs: int = 1,
    seed: int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    device: str = "cpu",
) -> dict:
    """The lesson's training loop as written, timed: the baseline the fast path is measured against.

    torchvision's dataset + ToTensor + DataLoader(batch_size=64, shuffle=True), the lesson's
    CNN (`lesson-cnn`), CrossEntropyLoss, Adam lr 0.01, `epochs` epochs. The time runs from the
    first batch to the last step; the test accuracy uses batches of 1000 (the lesson's
    per-image test loop gives the same number, slower). Threads are whatever the caller set.
    On a GPU the usual way: the model on the device and each batch moved there with `.to()`.
    """
    from torch.utils.data import DataLoader

    from cnnlab.data.datasets import get_dataset_info
    from cnnlab.models import get_model

    info = get_dataset_info(dataset)
    train_set = _torchvision_split(dataset, True, root, train_subset)
    test_set = _torchvision_split(dataset, False, root, test_subset)
    torch.manual_seed(seed)
    loader = DataLoader(train_set, batch_size=64, shuffle=True)
    model = get_model("lesson-cnn", info.image_shape, info.num_classes).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    steps = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            output = model(images)
            loss = loss_fn(output, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in DataLoader(test_set, batch_size=1000):
            correct += int((model(images.to(device)).argmax(1).cpu() == labels).sum())
    return {
        "what": "the lesson's loop: torchvision dataset + ToTensor + DataLoader(batch 64, "
                "shuffle), lesson-cnn, Adam lr 0.01",
        "device": device, "epochs": epochs, "steps": steps, "train_s": train_s,
        "test_acc": correct / len(test_set), "train_images": len(train_set),
        "threads": torch.get_num_threads(),
    }  # fmt: skip


# --- the speedrun --------------------------------------------------------------------------------


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
    callback: Callback | None = None,
) -> dict:
    """Train `recipe` once per seed (0..seeds-1); time it, test it, compare with the lesson's loop.

    Args:
        seeds: how many runs (seeds 0, 1, ...).
        target: the test accuracy the mean must reach (`reached_target` in the result).
        device: cpu or cuda (on cuda bf16 autocast is switched on; the data lives on the GPU).
        recipe: a train.RECIPES name.
        dataset, data_root: what to train on.
        threads: CPU threads for both the recipe and the baseline (default: the recipe's).
        train_subset, test_subset: first N images only (tests; the figures need the full sets).
        baseline: also time one epoch of the lesson's loop with the same threads.
        callback: gets every fit event, plus {"event": "seed_end", ...} and
            {"event": "baseline_start"}.

    Returns:
        A JSON-ready dict: machine, config, per-seed runs, train_s/test_acc/eval_s statistics,
        what the training time excludes (measured), baseline and speedup.
    """
    from cnnlab.train import evaluate, fit, load_batches, make_config

    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, not {seeds}")
    if not 0 < target <= 1:
        raise ConfigError(f"--target is a fraction in (0, 1], not {target}")
    emit = callback or (lambda event: None)
    overrides = dict(device=device, dataset=dataset, data_root=data_root, threads=threads,
                     train_subset=train_subset, test_subset=test_subset)  # fmt: skip
    if device.startswith("cuda"):
        overrides["bf16"] = True  # tensor cores; fit falls back to fp32 where unsupported
    load_before = _load_average()
    excluded = {"process_start_s": process_start_seconds(),
                "data_load_s": data_load_seconds(dataset, data_root)}  # fmt: skip
    # once a process: on CUDA the context, cuDNN's kernel choice and the allocator; on a CPU
    # oneDNN's just-in-time kernels for each layer shape (the first seed paid ~0.1 s of it)
    t0 = time.perf_counter()
    warm = dict(overrides, train_subset=min(train_subset or 4096, 4096), test_subset=1000)
    fit(make_config(recipe, seed=0, **warm), None)
    excluded["device_warmup_s"] = time.perf_counter() - t0
    rows, config = [], None
    for seed in range(seeds):
        config = make_config(recipe, seed=seed, **overrides)
        t0 = time.perf_counter()
        result = fit(config, None, callback=callback)
        fit_s = time.perf_counter() - t0
        _, test_batches, _ = load_batches(config, next(result.model.parameters()).device)
        t0 = time.perf_counter()
        evaluate(result.model, test_batches, tta=config.tta)  # the cost of one test pass
        eval_s = time.perf_counter() - t0
        row = {"seed": seed, "train_s": result.train_seconds, "test_acc": result.final["test_acc"],
               "eval_s": eval_s, "fit_overhead_s": fit_s - result.train_seconds}  # fmt: skip
        rows.append(row)
        emit({"event": "seed_end", **row, "seeds": seeds})
    threads_used = torch.get_num_threads()
    out = {
        "benchmark": "speedrun",
        "recipe": recipe,
        "device": device,
        "machine": machine_info(),
        "config": asdict(config),
        "threads": threads_used,
        "seeds": rows,
        "train_s": stats([r["train_s"] for r in rows]),
        "test_acc": stats([r["test_acc"] for r in rows]),
        "eval_s": stats([r["eval_s"] for r in rows]),
        "target": target,
        "reached_target": statistics.mean(r["test_acc"] for r in rows) >= target,
        "train_time_is": "wall seconds from the first training step to the final weights "
                         "(data already in memory, model built)",
        "excluded": {**excluded,
                     "fit_overhead_s_mean": statistics.mean(r["fit_overhead_s"] for r in rows),
                     "what": "process start (python + import torch, cnnlab), one-off data load "
                             "and verification, one short warm-up run per process (kernel "
                             "choice and code generation for each layer shape on the device; "
                             "on CUDA also the context), and fit's own overhead: model "
                             "build, per-epoch evaluation, collapse check"},
        "load_average_before": load_before,
    }  # fmt: skip
    if baseline:
        emit({"event": "baseline_start"})
        torch.set_num_threads(threads_used)  # the same threads as the recipe: a fair ratio
        base = lesson_baseline(dataset, data_root, train_subset=train_subset,
                               test_subset=test_subset, device=device)  # fmt: skip
        out["baseline"] = base
        out["speedup_vs_baseline"] = base["train_s"] / out["train_s"]["mean"]
    out["load_average_after"] = _load_average()
    return out


# --- batches: in memory vs DataLoader -----------------------------------------------------------


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
    makes every op wait for a descheduled partner (benchmarks/experiments/e08_threads.py).
    """
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _batches_benchmark(dataset, data_root, batch_size, max_batches)
    finally:
        torch.set_num_threads(threads_before)  # the next benchmark gets the process's default


def _batches_benchmark(dataset: str, data_root: str | None, batch_size: int,
                       max_batches: int | None) -> dict:  # fmt: skip
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from cnnlab.data.batches import InMemoryBatches
    from cnnlab.data.datasets import load_dataset

    ds = load_dataset(dataset, "train", data_root)
    info = ds.info
    n = len(ds) if max_batches is None else min(len(ds), max_batches * batch_size)

    def run(batches) -> tuple[float, int]:
        seen, t0 = 0, time.perf_counter()
        for x, _ in batches:
            seen += len(x)
            if seen >= n:
                break
        return time.perf_counter() - t0, seen

    fast = InMemoryBatches(ds.images, ds.targets, batch_size, info.mean, info.std, shuffle=True)
    fast_s, fast_n = run(fast)
    tv = _torchvision_split(dataset, True, data_root, None)
    tv.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(info.mean, info.std)])
    slow_s, slow_n = run(DataLoader(tv, batch_size=batch_size, shuffle=True))
    fast_ips, slow_ips = fast_n / fast_s, slow_n / slow_s
    return {
        "benchmark": "batches", "dataset": dataset, "batch_size": batch_size, "images": n,
        "machine": machine_info(), "threads": torch.get_num_threads(),
        "in_memory": {"seconds": fast_s, "images": fast_n, "images_per_s": fast_ips},
        "dataloader": {"seconds": slow_s, "images": slow_n, "images_per_s": slow_ips,
                       "what": "torchvision dataset + ToTensor + Normalize, DataLoader "
                               f"(batch {batch_size}, shuffle, no workers)"},
        "speedup": fast_ips / slow_ips,
    }  # fmt: skip


# --- best: single models and their ensemble ------------------------------------------------------


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
    from cnnlab.train import evaluate, fit, load_batches, make_config

    if seeds < 1 or not 0 <= ensemble <= seeds:
        raise ConfigError(f"need seeds >= 1 and 0 <= ensemble <= seeds, not {seeds}, {ensemble}")
    emit = callback or (lambda event: None)
    load_before = _load_average()
    rows, probs, targets, config = [], [], None, None
    for seed in range(seeds):
        config = make_config(recipe, seed=seed, dataset=dataset, data_root=data_root, device=device,
                             threads=threads, epochs=epochs, train_subset=train_subset,
                             test_subset=test_subset)  # fmt: skip
        result = fit(config, None, callback=callback)
        _, test_batches, _ = load_batches(config, next(result.model.parameters()).device)
        ev = evaluate(result.model, test_batches, tta=config.tta, return_outputs=True)
        probs.append(ev["probs"])
        targets = ev["targets"]
        row = {"seed": seed, "train_s": result.train_seconds, "test_acc": ev["acc"]}
        rows.append(row)
        emit({"event": "seed_end", **row, "seeds": seeds})
    out = {
        "benchmark": "best", "recipe": recipe, "dataset": dataset, "device": device,
        "machine": machine_info(), "config": asdict(config), "threads": torch.get_num_threads(),
        "seeds": rows, "train_s": stats([r["train_s"] for r in rows]),
        "test_acc": stats([r["test_acc"] for r in rows]), "load_average_before": load_before,
    }  # fmt: skip
    if ensemble:
        mean_probs = torch.stack(probs[:ensemble]).mean(0)  # (N, classes)
        out["ensemble"] = {
            "models": ensemble,
            "test_acc": float((mean_probs.argmax(1) == targets).float().mean()),
        }
    return out


# --- files ---------------------------------------------------------------------------------------


def result_path(result: dict, out_dir: str | os.PathLike) -> Path:
    """benchmarks/results/<benchmark>[-device|-dataset].json for a result dict."""
    name = RESULT_FILES[result["benchmark"]].format(
        device=result.get("device", "cpu"), dataset=result.get("dataset", "mnist")
    )
    return Path(out_dir) / name


def save_result(result: dict, out_dir: str | os.PathLike) -> Path:
    """Write a result dict as JSON (atomically) and return its path."""
    return runs.write_json(result_path(result, out_dir), result)


MARK_BEGIN = "<!-- cnnlab bench: generated from benchmarks/results/*.json; do not edit by hand -->"
MARK_END = "<!-- cnnlab bench: end -->"


def _machine_line(r: dict) -> str:
    m = r["machine"]
    gpu = f", GPU {m['gpu']}" if "gpu" in m and r.get("device", "cpu") != "cpu" else ""
    family = f" (family {m['cpu_family']}, model {m['model']})" if "cpu_family" in m else ""
    return (f"Machine: {m['cpu']}{family}, {m['cores']} cores, flags {' '.join(m['flags']) or 'none'} "
            f"(torch kernels: {m['torch_cpu_capability']}), torch {m['torch']}, "
            f"{r.get('threads', m['threads'])} thread(s)"
            + (f" (OpenMP wait policy {m['omp_wait_policy']})" if "omp_wait_policy" in m else "")
            + ", "
            + (f"load average at start {r['load_average_before']}" if "load_average_before" in r
               else f"load average at the end {m['load_average']}")
            + f"{gpu}.")  # fmt: skip


def _row(label: str, s: dict, scale: float = 1.0) -> str:
    cells = " | ".join(f"{scale * s[k]:.2f}" for k in ("mean", "median", "min", "max"))
    return f"| {label} | {cells} |"


def _speedrun_md(r: dict) -> list[str]:
    ex = r["excluded"]
    lines = [f"#### speedrun: recipe `{r['recipe']}` on {r['device']}, {len(r['seeds'])} seeds", "",
             _machine_line(r), "", "| | mean | median | min | max |", "|---|---|---|---|---|",
             _row("training wall time (s)", r["train_s"]),
             _row("test accuracy (%)", r["test_acc"], 100),
             _row("one evaluation pass (s)", r["eval_s"]), "",
             f"Target {100 * r['target']:.1f} %: "
             f"{'reached' if r['reached_target'] else 'NOT reached'}. Not in the training time: "
             f"process start {ex['process_start_s']:.2f} s, data load {ex['data_load_s']:.2f} s, "
             f"fit's overhead {ex['fit_overhead_s_mean']:.2f} s per run"
             + (f", the process's warm-up run {ex['device_warmup_s']:.2f} s"
                if "device_warmup_s" in ex else "") + "."]  # fmt: skip
    if "baseline" in r:
        b = r["baseline"]
        lines += ["", f"Baseline in the same run ({b['what']}), {b['epochs']} epoch, on "
                      f"{b.get('device', 'cpu')}, {b['threads']} CPU thread(s): "
                      f"{b['train_s']:.1f} s -> {100 * b['test_acc']:.2f} %."
                      f" Speedup: **{r['speedup_vs_baseline']:.1f}x**."]  # fmt: skip
    return lines


def _batches_md(r: dict) -> list[str]:
    f, d = r["in_memory"], r["dataloader"]
    return [f"#### batches: {r['dataset']} train, batch {r['batch_size']}", "", _machine_line(r),
            "", "| path | seconds | images/s |", "|---|---|---|",
            f"| InMemoryBatches | {f['seconds']:.2f} | {f['images_per_s']:,.0f} |",
            f"| {d['what']} | {d['seconds']:.2f} | {d['images_per_s']:,.0f} |", "",
            f"Speedup: **{r['speedup']:.0f}x**."]  # fmt: skip


def _best_md(r: dict) -> list[str]:
    t, a = r["train_s"], r["test_acc"]
    ens = r.get("ensemble")
    ens_text = f"; ensemble of {ens['models']}: {100 * ens['test_acc']:.2f} %" if ens else ""
    return [f"#### best: recipe `{r['recipe']}` on {r['dataset']}, {len(r['seeds'])} seed(s)", "",
            _machine_line(r), "",
            f"Training {t['mean']:.0f} s per model (max {t['max']:.0f} s); single-model test "
            f"accuracy mean {100 * a['mean']:.2f} % (min {100 * a['min']:.2f}, max "
            f"{100 * a['max']:.2f}){ens_text}."]  # fmt: skip


MARKDOWN = {"speedrun": _speedrun_md, "batches": _batches_md, "best": _best_md}


def markdown_tables(results: list[dict]) -> str:
    """The measured figures as Markdown, each block naming the machine it ran on."""
    lines: list[str] = []
    for r in results:
        lines += MARKDOWN[r["benchmark"]](r) + [""]
    return "\n".join(lines)


def update_markdown(path: str | os.PathLike, results: list[dict]) -> Path:
    """Replace the generated section of BENCHMARKS.md (between the markers) with `results`."""
    path = Path(path)
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = f"{MARK_BEGIN}\n\n{markdown_tables(results)}\n{MARK_END}"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Latest measured figures\n\n" + block + "\n"
    return runs.write_text(path, text)


def load_results(out_dir: str | os.PathLike) -> list[dict]:
    """Every result JSON in out_dir, speedruns first."""
    import json

    order = {"speedrun": 0, "batches": 1, "best": 2}
    found = [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("*.json"))]
    found = [r for r in found if r.get("benchmark") in order]
    return sorted(found, key=lambda r: order[r["benchmark"]])
