"""`cnnlab bench speedrun|batches|best|all`: reproducible benchmarks.

Each writes its result JSON to --out and refreshes the generated section of --markdown from
every result file there: by default runs/bench/ and runs/bench/BENCHMARKS.md (untracked);
with --record the committed benchmarks/results/ and benchmarks/BENCHMARKS.md (run from the
repository root). `make bench` runs `cnnlab bench all` (batches, then the speedrun with its
lesson-loop baseline); `make bench-record` runs `cnnlab bench all --record`.
"""

from __future__ import annotations

import argparse

from cnnlab.cli.output import format_table, print_json


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        default=None,
        help="folder for the result JSON (default: runs/bench, or benchmarks/results with --record)",
    )
    p.add_argument(
        "--markdown",
        default=None,
        help="Markdown file whose generated section is refreshed; '' for none (default: "
        "OUT/BENCHMARKS.md, or benchmarks/BENCHMARKS.md with --record)",
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="update the committed figures: benchmarks/results and benchmarks/BENCHMARKS.md",
    )
    p.add_argument(
        "--root",
        dest="data_root",
        default=None,
        help="data root (default: $CNNLAB_DATA or ~/.cache/cnnlab)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: the recipe's; 1 for fast)"
    )
    p.add_argument("--json", action="store_true", help="print the result JSON")


def _add_speedrun_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, default=5, help="runs, seeds 0..N-1 (default: 5)")
    p.add_argument(
        "--target", type=float, default=0.99, help="test accuracy the mean must reach (default: 0.99)"
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="(default: cpu)")
    p.add_argument("--recipe", default="fast", help="a train recipe (default: fast)")
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the lesson-loop baseline (default: run it)",
    )
    p.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="skip the published recipe, trained seed for seed beside the recipe (default: run it)",
    )
    p.add_argument(
        "--commands",
        type=int,
        default=0,
        metavar="N",
        help="also time the whole cnnlab train / predict / serve commands N times each (default: 0)",
    )
    p.add_argument(
        "--train-subset",
        type=int,
        default=None,
        help="first N training images, for quick checks (default: all)",
    )
    p.add_argument("--test-subset", type=int, default=None, help="first N test images (default: all)")


def register(sub, common) -> None:
    bench = sub.add_parser(
        "bench",
        help="benchmarks: speedrun, batches, best, all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")

    p = bench_sub.add_parser(
        "speedrun", parents=[common], help="time to 99 %% on MNIST per seed, vs the lesson's loop"
    )
    _add_speedrun_options(p)
    _add_output_options(p)
    p.set_defaults(func=cmd_speedrun)

    p = bench_sub.add_parser(
        "batches", parents=[common], help="in-memory batches vs torchvision DataLoader + ToTensor"
    )
    p.add_argument("--batch-size", type=int, default=64, help="(default: 64, the lesson's)")
    p.add_argument("--max-batches", type=int, default=None, help="stop early (default: one epoch)")
    _add_output_options(p)
    p.set_defaults(func=cmd_batches)

    p = bench_sub.add_parser(
        "best", parents=[common], help="the best recipe per seed and their ensemble (long)"
    )
    p.add_argument("--seeds", type=int, default=3, help="models, seeds 0..N-1 (default: 3)")
    p.add_argument(
        "--ensemble", type=int, default=3, help="average the first N models (0: none) (default: 3)"
    )
    p.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist (default: mnist)")
    p.add_argument("--epochs", type=int, default=None, help="(default: the recipe's)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="(default: cpu)")
    _add_output_options(p)
    p.set_defaults(func=cmd_best)

    p = bench_sub.add_parser("all", parents=[common], help="batches, then speedrun (make bench)")
    _add_speedrun_options(p)
    _add_output_options(p)
    p.set_defaults(func=cmd_all)


class _Reporter:
    """Prints one line per finished seed (and a tqdm bar per epoch on a terminal)."""

    def __init__(self, args):
        from cnnlab.cli.train import Progress

        self.args, self.bars = args, Progress(args) if not args.quiet else None

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "seed_end" and not self.args.quiet:
            print(
                f"seed {event['seed']}: {event['train_s']:.2f} s of training, test accuracy "
                f"{100 * event['test_acc']:.2f} %",
                flush=True,
            )
        elif kind == "baseline_start" and not self.args.quiet:
            print("the lesson's loop for one epoch (the baseline)...", flush=True)
        elif self.bars is not None and kind in ("epoch_start", "step", "warning", "interrupted"):
            self.bars(event)  # epoch_end/start lines would drown the seed lines: bars only
        elif kind == "epoch_end" and self.bars is not None:
            self.bars.close()


def _finish(args, result: dict) -> None:
    from cnnlab import bench
    from cnnlab.bench.report import destinations

    out, markdown = destinations(args.out, args.markdown, args.record)
    path = bench.save_result(result, out)
    if markdown:
        bench.update_markdown(markdown, bench.load_results(out))
    if args.json:
        print_json(result)
    print(f"result: {path}" + (f"; table: {markdown}" if markdown else ""))
    if not args.record and args.out is None:
        print("(a scratch copy; `--record` updates the committed benchmarks/results)")


def _speedrun(args) -> dict:
    from cnnlab import bench

    result = bench.speedrun(
        seeds=args.seeds,
        target=args.target,
        device=args.device,
        recipe=args.recipe,
        data_root=args.data_root,
        threads=args.threads,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        baseline=args.baseline,
        reference=args.reference,
        commands=args.commands,
        callback=_Reporter(args),
    )
    t, a = result["train_s"], result["test_acc"]
    rows = [
        ["training wall time (s)", t["mean"], t["median"], t["min"], t["max"]],
        ["test accuracy (%)", *(100 * a[k] for k in ("mean", "median", "min", "max"))],
    ]
    if "test_acc_one_pass" in result:  # the recipe's TTA off: each image read once
        once = result["test_acc_one_pass"]
        rows.append(
            ["read once, no TTA (%)", *(100 * once[k] for k in ("mean", "median", "min", "max"))]
        )
    print(format_table(["", "mean", "median", "min", "max"], rows))
    verdict = "reached" if result["reached_target"] else "NOT reached"
    line = f"target {100 * args.target:.1f} % {verdict} on {result['machine']['cpu']}"
    if "baseline" in result:
        b = result["baseline"]
        line += (
            f"; the lesson's loop: {b['train_s']:.1f} s -> {100 * b['test_acc']:.2f} %, "
            f"{result['speedup_vs_baseline']:.1f}x slower"
        )
    print(line)
    for extra in _speedrun_extras(result):
        print(extra)
    return result


def _versus(speedup: float) -> str:
    """A baseline's time over the recipe's (means) in words that stay right below 1x."""
    if speedup >= 1:
        return f"the recipe is {speedup:.{2 if speedup < 2 else 1}f}x faster"
    return f"the recipe takes {1 / speedup:.2f}x its time"


def _per_seed(result: dict) -> str:
    """' (per seed 7.3-8.6x)' where the run has several seeds."""
    from cnnlab.bench.report import per_seed_range

    spread = per_seed_range(result)
    return f" (per seed {spread})" if spread else ""


def _speedrun_extras(result: dict) -> list[str]:
    """The published recipe, the roofline and the whole commands, a line each."""
    lines = []
    if "reference" in result:
        r = result["reference"]
        lines.append(
            f"the published recipe: {r['train_s']['mean']:.2f} s -> "
            f"{100 * r['test_acc']['mean']:.2f} %, "
            f"{_versus(result['speedup_vs_reference'])}{_per_seed(result)}"
        )
    if "roofline" in result:
        r = result["roofline"]
        lines.append(
            f"roofline: {r['training_gmacs_per_s']:.1f} G multiply-adds/s in training, a "
            f"{r.get('gemm_dtype', 'float32')} GEMM {r['gemm_gmacs_per_s']:.1f}: "
            f"{100 * r['fraction_of_gemm']:.0f} % of it"
        )
    if "commands" in result:
        c = {k: v["median"] for k, v in result["commands"].items() if isinstance(v, dict)}
        lines.append(
            f"whole commands (median): import torch {c['import_torch_s']:.2f} s, cnnlab train "
            f"{c['train_command_s']:.2f} s (of it {c['train_command_training_s']:.2f} s training), "
            f"cnnlab predict {c['predict_command_s']:.2f} s"
            + (
                f", cnnlab serve until /healthz {c['serve_command_s']:.2f} s"
                if "serve_command_s" in c
                else ""
            )
        )
    return lines


def cmd_speedrun(args) -> int:
    _finish(args, _speedrun(args))
    return 0


def _batches(args, batch_size: int = 64, max_batches: int | None = None) -> dict:
    from cnnlab import bench

    result = bench.batches_benchmark(
        data_root=args.data_root,
        batch_size=batch_size,
        max_batches=max_batches,
        threads=args.threads or 1,
    )
    print(
        f"batches of {batch_size}: in memory {result['in_memory']['images_per_s']:,.0f} images/s,"
        f" DataLoader + ToTensor {result['dataloader']['images_per_s']:,.0f} images/s: "
        f"{result['speedup']:.0f}x"
    )
    return result


def cmd_batches(args) -> int:
    _finish(args, _batches(args, args.batch_size, args.max_batches))
    return 0


def cmd_best(args) -> int:
    from cnnlab import bench

    result = bench.best_run(
        seeds=args.seeds,
        ensemble=args.ensemble,
        dataset=args.dataset,
        data_root=args.data_root,
        device=args.device,
        threads=args.threads,
        epochs=args.epochs,
        callback=_Reporter(args),
    )
    a = result["test_acc"]
    line = (
        f"best on {args.dataset}: single model mean {100 * a['mean']:.2f} % (min "
        f"{100 * a['min']:.2f}), {result['train_s']['mean']:.0f} s each"
    )
    if "ensemble" in result:
        line += f"; ensemble of {args.ensemble}: {100 * result['ensemble']['test_acc']:.2f} %"
    print(line)
    _finish(args, result)
    return 0


def cmd_all(args) -> int:
    from cnnlab import bench
    from cnnlab.bench.report import destinations

    batches = _batches(args)
    bench.save_result(batches, destinations(args.out, args.markdown, args.record)[0])
    _finish(args, _speedrun(args))
    return 0
