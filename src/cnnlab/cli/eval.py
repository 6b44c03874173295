"""`cnnlab eval RUN`: accuracy, per-class scores, confusion.png, errors.png and eval.json."""

from __future__ import annotations

from pathlib import Path

from cnnlab.cli.output import format_table, output_folder, print_json


def register(sub, common) -> None:
    p = sub.add_parser("eval", parents=[common], help="evaluate a run folder on its test set")
    p.add_argument("run", help="run folder written by `cnnlab train`")
    p.add_argument("--out", help="folder for eval.json, confusion.png, errors.png (default: RUN)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="(default: test)")
    p.add_argument("--root", default=None, help="data root (default: $CNNLAB_DATA or ~/.cache/cnnlab)")
    p.add_argument("--subset", type=int, help="only the first N images (default: all)")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="(default: auto)"
    )
    p.add_argument("--json", action="store_true", help="print eval.json instead of tables")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from cnnlab.errors import ConfigError
    from cnnlab.evaluation import evaluate_run

    if args.subset is not None and args.subset < 1:
        raise ConfigError(f"--subset must be >= 1, not {args.subset}")
    if args.out:
        output_folder(args.out, "--out")
    elif Path(args.run).is_dir():  # eval files go into the run folder: it must be writable
        output_folder(args.run, "run folder (or choose another with --out)", create=False)
    report = evaluate_run(
        args.run, args.out, split=args.split, root=args.root, subset=args.subset, device=args.device
    )
    if args.json:
        print_json(report)
        return 0
    print(
        f"{report['model']} on {report['dataset']} {report['split']}: accuracy "
        f"{100 * report['accuracy']:.2f}% ({report['errors']} errors in {report['images']} "
        f"images), loss {report['loss']:.4f}, macro F1 {report['macro_f1']:.4f}"
    )
    if "accuracy_one_pass" in report:
        print(
            f"with {report['tta']}-shift test-time augmentation; each image read once, as "
            f"`cnnlab predict` and the web app read it: {100 * report['accuracy_one_pass']:.2f}%"
        )
    rows = [
        [s["class"], f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", s["support"]]
        for s in report["per_class"]
    ]
    print(format_table(["class", "precision", "recall", "F1", "images"], rows, align="lrrrr"))
    if report["most_confused"]:
        print(
            "most confused (true -> predicted): "
            + ", ".join(f"{t} -> {p} ({n})" for t, p, n in report["most_confused"])
        )
    print("wrote " + ", ".join(report["files"].values()))
    return 0
