"""`cnnlab demo`: the main job (what `make demo` runs): the lesson's MLP vs a CNN on MNIST."""

from __future__ import annotations

import time

from cnnlab.cli.compare import _ModelProgress
from cnnlab.cli.output import format_table


def register(sub, common) -> None:
    p = sub.add_parser(
        "demo", parents=[common], help="fetch MNIST, compare the lesson's MLP with a CNN, write a report"
    )
    p.add_argument("--out", default="runs/demo", help="report folder (default: runs/demo)")
    p.add_argument("--threads", type=int, help="CPU threads (default: one per core)")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="(default: auto)"
    )
    p.add_argument(
        "--epochs",
        type=int,
        help="epochs of both models (default: mlp 2, the lesson's; cnn 4, the quick recipe's)",
    )
    p.add_argument(
        "--train-subset", type=int, help="first N training images, for quick checks (default: all)"
    )
    p.add_argument("--test-subset", type=int, help="first N test images (default: all)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from cnnlab.reports.compare import lesson_sentence, table_rows
    from cnnlab.reports.demo import run_demo

    start = time.perf_counter()
    progress = _DemoProgress(args)
    try:
        rows, files = run_demo(
            args.out,
            callback=progress,
            threads=args.threads,
            device=args.device,
            epochs=args.epochs,
            train_subset=args.train_subset,
            test_subset=args.test_subset,
        )
    finally:
        progress.close()
    headers, body = table_rows(rows)
    print()
    print(format_table(headers, body))
    print()
    print(lesson_sentence(rows))
    print()
    print(f"done in {time.perf_counter() - start:.0f}s. Open:")
    for name, path in files.items():
        print(f"  {name:<10} {path}")
    cnn = next(r.run_dir for r in rows if r.name == "cnn")
    print(f"next: cnnlab eval {cnn}   (the cnn run folder, loadable by predict and the web app)")
    return 0


class _DemoProgress(_ModelProgress):
    def __call__(self, event: dict) -> None:
        if event["event"] == "fetched":
            if not self.quiet:
                print(f"MNIST: verified files in {event['raw_dir']} ({event['source']})")
            return
        super().__call__(event)
