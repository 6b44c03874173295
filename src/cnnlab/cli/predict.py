"""`cnnlab predict RUN FILE|DIR [...]`: top-k classes for your own images."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

from cnnlab.cli.output import format_table, output_folder, progress_enabled

FORMATS = ("table", "json", "csv")


def register(sub, common) -> None:
    p = sub.add_parser(
        "predict",
        parents=[common],
        help="predict your own images with a trained run",
        description="Preprocess each image as the run's dataset was made (for MNIST: white on "
        "black, fitted to 20x20, centred by mass in 28x28) and print the top classes. "
        "Directories are walked for .png .jpg .jpeg .bmp .gif .webp files. A file that cannot "
        "be used gets one error line on stderr; the others are still predicted; the exit code "
        "is 2 if any failed.",
    )
    p.add_argument("run", metavar="RUN", help="run folder (from `cnnlab train --out`)")
    p.add_argument("inputs", nargs="+", metavar="FILE|DIR", help="images or folders of images")
    p.add_argument("--top", type=int, default=3, help="classes shown per image (default: 3)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output (default: table)")
    p.add_argument(
        "--preview",
        metavar="DIR",
        default=None,
        help="write DIR/<name>.png per input: your image beside what the model saw (default: none)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    from tqdm import tqdm

    from cnnlab.errors import ConfigError
    from cnnlab.predict import Failure, Predictor, collect_files
    from cnnlab.runs import load_run

    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, not {args.top}")
    predictor = Predictor(load_run(args.run))
    files, skipped = collect_files(args.inputs)
    if not files:
        raise ConfigError(f"no image files found in {', '.join(args.inputs)}")
    if args.preview:
        output_folder(args.preview, "--preview")
    preview_names: set[str] = set()
    results = []
    writer = csv.writer(sys.stdout) if args.format == "csv" else None
    if writer:
        writer.writerow(
            ["file"] + [f"{w}{i + 1}" for i in range(args.top) for w in ("class", "p")] + ["error"]
        )
    bar = tqdm(total=len(files), unit="img", disable=not progress_enabled(args), file=sys.stderr)
    failed = 0
    start = time.perf_counter()
    stream = predictor.predict_files(
        files, top=args.top, batch_size=args.batch_size, keep_steps=bool(args.preview)
    )
    for result in stream:
        bar.update(1)
        if isinstance(result, Failure):
            failed += 1
            bar.clear()
            print(f"cnnlab: error: {result.error}", file=sys.stderr)
        elif args.preview:
            _write_preview(result, Path(args.preview), preview_names)
        if writer:
            _write_csv_row(writer, result, args.top)
            sys.stdout.flush()
        else:
            results.append(result)
        bar.set_postfix(failed=failed, refresh=False)
    bar.close()
    if args.format == "json":
        print(json.dumps([_as_dict(r) for r in results], indent=2))
    elif args.format == "table":
        _print_table(results, args.top)
    done = len(files) - failed
    seconds = time.perf_counter() - start
    if failed or skipped or len(files) > 1:
        note = f"predicted {done} of {len(files)} images in {seconds:.1f} s"
        note += f"; {failed} failed" if failed else ""
        note += f"; skipped {len(skipped)} non-image files in folders" if skipped else ""
        note += f"; previews in {args.preview}" if args.preview and done else ""
        print(note, file=sys.stderr)
    return 2 if failed else 0


def _write_preview(result, folder: Path, taken: set[str]) -> None:
    """folder/<name>.png for one prediction, numbering names already taken (a-2, a-3, ...)."""
    from cnnlab.reports.explain_figures import prediction_preview, safe_name

    stem = safe_name(Path(result.name).stem)
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    prediction_preview(result, folder / f"{name}.png")


def _as_dict(result) -> dict:
    from cnnlab.predict import Failure

    if isinstance(result, Failure):
        return {"file": result.name, "error": result.error}
    pre = result.preprocessed
    return {
        "file": result.name,
        "top": [{"class": c, "probability": round(p, 6)} for c, p in result.top],
        "inverted": bool(pre.inverted) if pre else None,
        "thickened": int(pre.thickened) if pre else None,
    }


def _write_csv_row(writer, result, top: int) -> None:
    from cnnlab.predict import Failure

    if isinstance(result, Failure):
        writer.writerow([result.name] + [""] * (2 * top) + [result.error])
        return
    cells = [v for c, p in result.top for v in (c, f"{p:.6f}")]
    writer.writerow([result.name] + cells + [""] * (2 * top - len(cells)) + [""])


def _print_table(results, top: int) -> None:
    from cnnlab.predict import Failure

    rows = []
    for r in results:
        if isinstance(r, Failure):
            rows.append([r.name, "error"] + [""] * (top - 1))
        else:
            cells = [f"{c} ({p:.1%})" for c, p in r.top]
            rows.append([r.name, *cells, *[""] * (top - len(cells))])
    if rows:
        print(format_table(["file"] + [f"#{i + 1}" for i in range(top)], rows, align="l" * (top + 1)))
