"""Reporting the benchmarks: result files, and the Markdown section of BENCHMARKS.md made from them.

Each result dict from `cnnlab.bench.run` is saved as OUT/<benchmark>[-device|-dataset].json,
OUT being runs/bench (untracked) unless the figures are recorded on purpose into
benchmarks/results; `update_markdown` rewrites only the generated section between two markers,
so hand-written notes around it stay. Every block names the machine it ran on. Never prints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cnnlab import io

RESULT_FILES = {
    "speedrun": "speedrun-{device}.json",
    "batches": "batches.json",
    "best": "best-{dataset}.json",
}
RESULT_ORDER = {"speedrun": 0, "batches": 1, "best": 2}  # load_results: speedruns first
# where results go: a scratch folder by default, the committed figures only when recorded
DEFAULT_DIR = "runs/bench"
RECORD_DIR = "benchmarks/results"
RECORD_MARKDOWN = "benchmarks/BENCHMARKS.md"
MARK_BEGIN = "<!-- cnnlab bench: generated from benchmarks/results/*.json; do not edit by hand -->"
MARK_END = "<!-- cnnlab bench: end -->"


def result_path(result: dict, out_dir: str | os.PathLike) -> Path:
    """OUT/<benchmark>[-device|-dataset].json for a result dict."""
    name = RESULT_FILES[result["benchmark"]].format(
        device=result.get("device", "cpu"), dataset=result.get("dataset", "mnist")
    )
    return Path(out_dir) / name


def save_result(result: dict, out_dir: str | os.PathLike) -> Path:
    """Write a result dict as JSON (atomically) and return its path."""
    return io.write_json(result_path(result, out_dir), result)


def load_results(out_dir: str | os.PathLike) -> list[dict]:
    """Every result JSON in out_dir, speedruns first."""
    found = [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("*.json"))]
    found = [r for r in found if r.get("benchmark") in RESULT_ORDER]
    return sorted(found, key=lambda r: RESULT_ORDER[r["benchmark"]])


def _machine_line(r: dict) -> str:
    """'Machine: CPU (family, model), cores, flags, torch, threads, load average, GPU.'"""
    m = r["machine"]
    gpu = f", GPU {m['gpu']}" if "gpu" in m and r.get("device", "cpu") != "cpu" else ""
    family = f" (family {m['cpu_family']}, model {m['model']})" if "cpu_family" in m else ""
    text = (
        f"Machine: {m['cpu']}{family}, {m['cores']} cores, flags {' '.join(m['flags']) or 'none'} "
        f"(torch kernels: {m['torch_cpu_capability']}), torch {m['torch']}, "
        f"{r.get('threads', m['threads'])} thread(s)"
    )
    if "omp_wait_policy" in m:
        text += f" (OpenMP wait policy {m['omp_wait_policy']})"
    if "load_average_before" in r:
        text += f", load average at start {r['load_average_before']}"
    else:
        text += f", load average at the end {m['load_average']}"
    return f"{text}{gpu}."


def _row(label: str, s: dict, scale: float = 1.0) -> str:
    """A table row: label, then mean, median, min, max."""
    cells = " | ".join(f"{scale * s[k]:.2f}" for k in ("mean", "median", "min", "max"))
    return f"| {label} | {cells} |"


def _speedrun_md(r: dict) -> list[str]:
    """The speedrun block: machine, the statistics table, what is excluded, the baseline."""
    ex = r["excluded"]
    verdict = "reached" if r["reached_target"] else "NOT reached"
    summary = (
        f"Target {100 * r['target']:.1f} %: {verdict}. Not in the training time: "
        f"process start {ex['process_start_s']:.2f} s, data load {ex['data_load_s']:.2f} s, "
        f"fit's overhead {ex['fit_overhead_s_mean']:.2f} s per run"
    )
    if "device_warmup_s" in ex:
        summary += f", the process's warm-up run {ex['device_warmup_s']:.2f} s"
    lines = [
        f"#### speedrun: recipe `{r['recipe']}` on {r['device']}, {len(r['seeds'])} seeds",
        "",
        _machine_line(r),
        "",
        "| | mean | median | min | max |",
        "|---|---|---|---|---|",
        _row("training wall time (s)", r["train_s"]),
        _row("test accuracy (%)", r["test_acc"], 100),
        *(
            [_row("read once, no TTA (%)", r["test_acc_one_pass"], 100)]
            if "test_acc_one_pass" in r
            else []
        ),
        _row("one evaluation pass (s)", r["eval_s"]),
        "",
        summary + ".",
    ]
    if "baseline" in r:
        b = r["baseline"]
        lines += [
            "",
            f"Baseline in the same run ({b['what']}), {b['epochs']} epoch"
            f"{'' if b['epochs'] == 1 else 's'}, on "
            f"{b.get('device', 'cpu')}, {b['threads']} CPU thread(s): "
            f"{b['train_s']:.1f} s -> {100 * b['test_acc']:.2f} %."
            f" Speedup: **{r['speedup_vs_baseline']:.1f}x**.",
        ]
    return lines + _reference_md(r) + _commands_md(r.get("commands"), r["recipe"])


def per_seed_range(r: dict) -> str:
    """'7.3-8.6x': a speedrun's seed-by-seed ratios to the published recipe; '' for one seed."""
    per = r.get("speedup_per_seed")
    if not per or per["min"] == per["max"]:
        return ""
    digits = 2 if per["max"] < 2 else 1
    return f"{per['min']:.{digits}f}-{per['max']:.{digits}f}x"


def _seed_by_seed(r: dict) -> str:
    """'<spread> seed by seed' after a comma, where the run has several seeds."""
    spread = per_seed_range(r)
    return f", {spread} seed by seed" if spread else ""


def _reference_md(r: dict) -> list[str]:
    """The published recipe's line and the roofline line, where the run has them."""
    lines = []
    if "reference" in r:
        ref = r["reference"]
        lines += [
            "",
            f"The published recipe in the same run, seed for seed: {ref['train_s']['mean']:.2f} s "
            f"mean -> {100 * ref['test_acc']['mean']:.2f} %; `{r['recipe']}` trains "
            f"**{r['speedup_vs_reference']:.1f}x** as fast (means){_seed_by_seed(r)}.",
        ]
    if "roofline" in r:
        roof = r["roofline"]
        lines += [
            "",
            f"Roofline: {roof['training_gmacs_per_s']:.1f} G multiply-adds/s in training against "
            f"{roof['gemm_gmacs_per_s']:.1f} G for a 1024^3 {roof.get('gemm_dtype', 'float32')} "
            f"GEMM on the same {roof['threads']} thread(s): {100 * roof['fraction_of_gemm']:.0f} %"
            + _fp32_roof(roof)
            + ".",
        ]
    return lines


def _fp32_roof(roof: dict) -> str:
    """Beside a bfloat16 roof, the float32 one (the roof of a run without bf16)."""
    if roof.get("gemm_dtype") != "bfloat16":
        return ""
    fp32 = roof["gemm_fp32_gmacs_per_s"]
    return f" (a float32 GEMM: {fp32:.1f} G, {100 * roof['training_gmacs_per_s'] / fp32:.0f} % of it)"


def _commands_md(c: dict | None, recipe: str) -> list[str]:
    """Whole commands in fresh processes (medians), each beside `python -c "import torch"`."""
    if not c:
        return []
    torch_s = c["import_torch_s"]["median"]
    rows = [('`python -c "import torch"`', c["import_torch_s"], "(the baseline)")]
    training = c["train_command_training_s"]["median"]
    beyond = c["train_command_s"]["median"] - torch_s - training
    rows.append(
        (
            f"`cnnlab train --recipe {recipe}`",
            c["train_command_s"],
            f"{beyond:+.2f} s beyond it and {training:.2f} s of training",
        )
    )
    rows.append(("`cnnlab predict RUN one.png`", c["predict_command_s"], ""))
    if "serve_command_s" in c:
        rows.append(("`cnnlab serve RUN` until /healthz answers", c["serve_command_s"], ""))
    lines = ["", f"What the user waits for, medians of {c['runs']} fresh processes:", ""]
    lines += ["| command | wall s | beyond `import torch` |", "|---|---|---|"]
    for label, s, note in rows:
        versus = note or f"{s['median'] - torch_s:+.2f} s"
        lines.append(f"| {label} | {s['median']:.2f} | {versus} |")
    return lines


def _batches_md(r: dict) -> list[str]:
    """The batches block: machine and the two paths' images/s."""
    f, d = r["in_memory"], r["dataloader"]
    return [
        f"#### batches: {r['dataset']} train, batch {r['batch_size']}",
        "",
        _machine_line(r),
        "",
        "| path | seconds | images/s |",
        "|---|---|---|",
        f"| InMemoryBatches | {f['seconds']:.2f} | {f['images_per_s']:,.0f} |",
        f"| {d['what']} | {d['seconds']:.2f} | {d['images_per_s']:,.0f} |",
        "",
        f"Speedup: **{r['speedup']:.0f}x**.",
    ]


def _best_md(r: dict) -> list[str]:
    """The best block: machine, training time, single-model and ensemble accuracy."""
    t, a = r["train_s"], r["test_acc"]
    ens = r.get("ensemble")
    ens_text = f"; ensemble of {ens['models']}: {100 * ens['test_acc']:.2f} %" if ens else ""
    return [
        f"#### best: recipe `{r['recipe']}` on {r['dataset']}, {len(r['seeds'])} seed(s)",
        "",
        _machine_line(r),
        "",
        f"Training {t['mean']:.0f} s per model (max {t['max']:.0f} s); single-model test "
        f"accuracy mean {100 * a['mean']:.2f} % (min {100 * a['min']:.2f}, max "
        f"{100 * a['max']:.2f}){ens_text}.",
    ]


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
    return io.write_text(path, text)


def destinations(
    out_dir: str | None, markdown: str | None, record: bool = False
) -> tuple[Path, Path | None]:
    """The results folder and Markdown file (None: none) of a benchmark run.

    Unset, they are runs/bench and runs/bench/BENCHMARKS.md, or with `record` the committed
    benchmarks/results and benchmarks/BENCHMARKS.md; markdown '' means no Markdown file.
    """
    out = Path(out_dir or (RECORD_DIR if record else DEFAULT_DIR))
    if markdown is None:
        markdown = RECORD_MARKDOWN if record else str(out / "BENCHMARKS.md")
    return out, Path(markdown) if markdown else None
