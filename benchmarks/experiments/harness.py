"""Shared harness for the speed experiments (issue 7): nets, one training run, evaluation.

Every experiment script imports this, builds a list of variants and runs them interleaved
(variant A seed 0, variant B seed 0, A seed 1, ...) so that load from other processes on the
shared 2-core machine hits every variant alike; results are medians per variant.
Run from the worktree root: `PYTHONPATH=src python benchmarks/experiments/<script>.py`.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.data.batches import InMemoryBatches
from cnnlab.data.datasets import load_dataset

MEAN, STD = (0.1307,), (0.3081,)


# ---------------------------------------------------------------- nets


def conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, bn: bool = True
) -> list[nn.Module]:
    """Conv (no bias: BN has one) + BatchNorm + ReLU; without BN the conv keeps its bias."""
    conv = nn.Conv2d(cin, cout, k, stride, pad, bias=not bn)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)] if bn else [conv, nn.ReLU(inplace=True)]


def net_ref() -> nn.Module:
    """The published GPU recipe's net: conv24 k5 / pool / conv32 k5 / pool / fc256 / fc10."""
    return nn.Sequential(
        *conv_bn(1, 24, 5),
        nn.MaxPool2d(2),  # (B, 24, 12, 12)
        *conv_bn(24, 32, 5),
        nn.MaxPool2d(2),  # (B, 32, 4, 4)
        nn.Flatten(),
        nn.Linear(512, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, 10),
    )


def net_stride(
    c1: int = 16,
    c2: int = 32,
    c3: int = 0,
    k1: int = 5,
    p1: int = 0,
    hidden: int = 0,
    bn1: bool = True,
    bn2: bool = True,
    k2: int = 3,
) -> nn.Module:
    """Stride instead of pooling: conv k1 s2 (28->12 for k1=5) then conv k2 s2 (12->5) [conv3 s1]."""
    s1 = (28 + 2 * p1 - k1) // 2 + 1
    layers = [*conv_bn(1, c1, k1, 2, p1, bn1)]  # (B, c1, s1, s1)
    layers += conv_bn(c1, c2, k2, 2, 0, bn2)  # (B, c2, s2, s2)
    s2 = (s1 - k2) // 2 + 1
    cout, s = c2, s2
    if c3:
        layers += conv_bn(c2, c3, 3, 1, 0)  # (B, c3, s2 - 2, s2 - 2)
        cout, s = c3, s2 - 2
    layers.append(nn.Flatten())
    if hidden:
        layers += [nn.Linear(cout * s * s, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 10)]
    else:
        layers.append(nn.Linear(cout * s * s, 10))
    return nn.Sequential(*layers)


def net_pool(c1: int = 16, c2: int = 32, k: int = 5, hidden: int = 128) -> nn.Module:
    """Like the reference with fewer channels: conv k / pool / conv k / pool / fc."""
    s = ((28 - k + 1) // 2 - k + 1) // 2
    layers = [*conv_bn(1, c1, k), nn.MaxPool2d(2), *conv_bn(c1, c2, k), nn.MaxPool2d(2), nn.Flatten()]
    if hidden:
        layers += [nn.Linear(c2 * s * s, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 10)]
    else:
        layers.append(nn.Linear(c2 * s * s, 10))
    return nn.Sequential(*layers)


NETS = {"ref": net_ref, "stride": net_stride, "pool": net_pool}


def macs_per_image(model: nn.Module) -> int:
    """Multiply-accumulates of one forward pass (convs and linears only)."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features

    hs = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, 28, 28))
    for h in hs:
        h.remove()
    return total


# ---------------------------------------------------------------- one run


@dataclass
class Config:
    net: str = "ref"
    net_kw: dict = field(default_factory=dict)
    batch_size: int = 256
    lr: float = 0.01  # OneCycle peak
    betas: tuple[float, float] = (0.7, 0.9)
    wd: float = 0.0
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div: float = 1e4
    epochs: float = 1.0  # fractions stop early (a partial last epoch)
    label_smoothing: float = 0.0
    channels_last: bool = True
    bf16: bool = False
    threads: int = 1  # 2 threads stall badly while other processes share the 2 cores
    compile: bool = False
    tta: int = 0  # extra shifted copies at test time (0 = plain)
    optimizer: str = "adam"  # adam | adamw | sgd
    fused: bool = False  # Adam's fused CPU kernel instead of foreach
    eval_bs: int = 2000


_data: dict = {}


def data():
    """MNIST train/test as uint8 tensors, loaded once per process (excluded from timings)."""
    if not _data:
        tr, te = load_dataset("mnist", "train"), load_dataset("mnist", "test")
        _data.update(xtr=tr.images, ytr=tr.targets, xte=te.images, yte=te.targets)
    return _data


def make_optimizer(cfg: Config, params):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.wd)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    kind = dict(fused=True) if cfg.fused else dict(foreach=True)
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.wd, **kind)


def train(cfg: Config, seed: int):
    """Train one model; returns (model, wall s from first step to final weights, CPU s, steps)."""
    torch.set_num_threads(cfg.threads)
    d = data()
    torch.manual_seed(seed)
    model = NETS[cfg.net](**cfg.net_kw)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    batches = InMemoryBatches(
        d["xtr"],
        d["ytr"],
        cfg.batch_size,
        MEAN,
        STD,
        shuffle=True,
        seed=seed,
        drop_last=True,
        channels_last=cfg.channels_last,
    )
    per_epoch = len(batches)
    total = max(1, round(per_epoch * cfg.epochs))
    opt = make_optimizer(cfg, model.parameters())
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=cfg.lr,
        total_steps=total,
        pct_start=cfg.pct_start,
        div_factor=cfg.div_factor,
        final_div_factor=cfg.final_div,
        cycle_momentum=cfg.optimizer == "sgd",
    )
    step_fn = model
    t_compile = 0.0
    if cfg.compile:
        t0 = time.perf_counter()
        step_fn = torch.compile(model)
        t_compile = time.perf_counter() - t0  # the lazy compile happens in the first steps
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    step, epoch = 0, 0
    while step < total:
        batches.set_epoch(epoch)
        for x, y in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                out = step_fn(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= total:
                break
        epoch += 1
    seconds = time.perf_counter() - t0 + t_compile
    cpu_seconds = time.process_time() - c0  # all threads; robust to other processes' load
    return model, seconds, cpu_seconds, total


def shifts(k: int) -> list[tuple[int, int]]:
    """The first k one-pixel shifts used by test-time augmentation."""
    return [(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)][:k]


@torch.no_grad()
def evaluate(model: nn.Module, cfg: Config, tta_levels=(0, 2, 4, 8)) -> dict[int, tuple[float, float]]:
    """{k: (test accuracy, seconds)} averaging softmax over the plain image and k shifted copies."""
    d = data()
    model.eval()
    batches = InMemoryBatches(
        d["xte"], d["yte"], cfg.eval_bs, MEAN, STD, channels_last=cfg.channels_last
    )
    kmax = max(tta_levels)
    correct = {k: 0 for k in tta_levels}
    seconds = {k: 0.0 for k in tta_levels}
    for x, y in batches:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            probs = model(x).float().softmax(1)
            for i, (dy, dx) in enumerate([(0, 0), *shifts(kmax)]):
                if i:  # roll is cheap and digits have a black border, so wrap-around is harmless
                    probs += model(torch.roll(x, (dy, dx), (2, 3))).float().softmax(1)
                if i in correct:
                    correct[i] += (probs.argmax(1) == y).sum().item()
                    seconds[i] += time.perf_counter() - t0  # cumulative: level i costs all before it
    return {k: (correct[k] / len(d["yte"]), seconds[k]) for k in tta_levels}


# ---------------------------------------------------------------- micro-timing


def cpu_ms(fn, reps: int = 7, n: int = 10) -> list[float]:
    """CPU milliseconds per call of fn: `reps` samples, each the mean of `n` calls, after one
    warm-up call. CPU time, not wall time: other jobs on the shared cores do not inflate it."""
    fn()
    samples = []
    for _ in range(reps):
        c = time.process_time()
        for _ in range(n):
            fn()
        samples.append((time.process_time() - c) / n * 1e3)
    return samples


def epoch_phases(model, loss_fn, opt, sched, batches, clock=time.perf_counter) -> dict[str, float]:
    """One epoch of training steps, timed by phase with `clock`: gather (the next batch),
    forward (+ loss), backward, optimizer (+ the schedule's step when `sched` is given)."""
    phases = dict(gather=0.0, forward=0.0, backward=0.0, optimizer=0.0)
    it = iter(batches)
    for _ in range(len(batches)):
        t0 = clock()
        x, y = next(it)
        t1 = clock()
        loss = loss_fn(model(x), y)
        t2 = clock()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = clock()
        opt.step()
        if sched is not None:
            sched.step()
        t4 = clock()
        for k, a, b in (("gather", t0, t1), ("forward", t1, t2), ("backward", t2, t3),
                        ("optimizer", t3, t4)):  # fmt: skip
            phases[k] += b - a
    return phases


def op_table(model, loss_fn, opt, batches, steps: int = 30, rows: int = 16) -> str:
    """torch.profiler's per-op table (by input shape) over `steps` training steps of `batches`.
    It inflates small ops: read it for shares, not for absolute times."""
    from torch.profiler import ProfilerActivity, profile

    it = iter(batches)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            x, y = next(it)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total",
        row_limit=rows,
        max_name_column_width=36,
        max_shapes_column_width=48,
    )


# ---------------------------------------------------------------- comparisons


def compare(variants: dict[str, Config], seeds: list[int], out: str | None = None) -> dict:
    """Run every variant on every seed interleaved; print and return per-variant summaries."""
    data()
    rows = {name: [] for name in variants}
    for seed in seeds:
        for name, cfg in variants.items():
            model, sec, cpu, steps = train(cfg, seed)
            ev = evaluate(model, cfg)
            acc, esec = ev[cfg.tta]
            rows[name].append(
                {
                    "seed": seed,
                    "train_s": sec,
                    "cpu_s": cpu,
                    "acc": acc,
                    "eval_s": esec,
                    "steps": steps,
                    "tta": {k: v[0] for k, v in ev.items()},
                    "tta_s": {k: v[1] for k, v in ev.items()},
                }
            )
            tta = " ".join(f"{k}:{v[0] * 100:.2f}" for k, v in ev.items())
            print(
                f"  {name:28s} seed {seed}: {sec:6.2f} s (cpu {cpu:6.2f})  {acc * 100:6.2f} %  "
                f"eval {esec:.2f} s  tta {tta}",
                file=sys.stderr,
                flush=True,
            )
    summary = {}
    print(
        f"\n{'variant':28s} {'MACs':>8s} {'med s':>7s} {'min s':>7s} {'cpu s':>7s} {'mean %':>7s} "
        f"{'min %':>7s}  mean % with TTA k=0/2/4/8"
    )
    for name, rs in rows.items():
        cfg = variants[name]
        macs = macs_per_image(NETS[cfg.net](**cfg.net_kw))
        s = {
            "config": asdict(cfg),
            "macs": macs,
            "runs": rs,
            "median_s": statistics.median(r["train_s"] for r in rs),
            "min_s": min(r["train_s"] for r in rs),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in rs),
            "mean_acc": statistics.mean(r["acc"] for r in rs),
            "min_acc": min(r["acc"] for r in rs),
            "median_eval_s": statistics.median(r["eval_s"] for r in rs),
            "tta_mean_acc": {k: statistics.mean(r["tta"][k] for r in rs) for k in rs[0]["tta"]},
        }
        summary[name] = s
        print(
            f"{name:28s} {macs / 1e6:7.2f}M {s['median_s']:7.2f} {s['min_s']:7.2f} "
            f"{s['median_cpu_s']:7.2f} "
            f"{s['mean_acc'] * 100:7.2f} {s['min_acc'] * 100:7.2f}  "
            + " ".join(f"{v * 100:.2f}" for v in s["tta_mean_acc"].values())
        )
    if out:
        with open(out, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def variant(base: Config, **kw) -> Config:
    return replace(base, **kw)


__all__ = ["Config", "compare", "variant", "train", "evaluate", "data", "math"]
