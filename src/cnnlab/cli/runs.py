"""`cnnlab runs [DIR]`: the run folders under DIR with their model, progress, scores and state."""

from __future__ import annotations

import time

from cnnlab.cli.output import format_table, print_json


def register(sub, common) -> None:
    p = sub.add_parser(
        "runs",
        parents=[common],
        help="list the run folders under a directory",
        description="Every run folder under DIR (folders holding config.json or model.safetensors): "
        "model, dataset, epochs done/planned, validation and test accuracy, date, size and "
        "state (complete, resumable, before-first-epoch, broken). Reads only the JSON files and "
        "the weights header, so it is quick on many runs.",
    )
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="(default: runs)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_runs, torch_free=True)


def size_text(n: int) -> str:
    """1536 -> '1.5 KB' (powers of 1024)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _row(s) -> list:
    planned = "?" if s.epochs_planned is None else s.epochs_planned
    date = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.modified))
    state = s.state if s.problem is None else f"{s.state}: {s.problem[:80]}"
    return [
        s.name,
        s.model or "?",
        s.dataset or "?",
        f"{s.epochs_done}/{planned}",
        _percent(s.val_acc),
        _percent(s.test_acc),
        date,
        size_text(s.size_bytes),
        state,
    ]


def cmd_runs(args) -> int:
    from dataclasses import asdict

    from cnnlab.runs import list_runs

    found = list_runs(args.dir)
    if args.json:
        print_json([{**asdict(s), "path": str(s.path)} for s in found])
        return 0
    if not found:
        print(f"no run folders under {args.dir}; train one with `cnnlab train --out {args.dir}/NAME`")
        return 0
    headers = ["run", "model", "dataset", "epochs", "val acc", "test acc", "date", "size", "state"]
    print(format_table(headers, [_row(s) for s in found], align="lllrrrlrl"))
    return 0
