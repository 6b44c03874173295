"""`cnnlab shapes pool-matrix`: max/average pooling of a small matrix, window by window.

cnnlab shapes pool-matrix --op both "[[2,3],[5,6]]"        # max 6, avg 4, window by window

`cnnlab pool` is the old name, kept for one release: it says so on stderr, then does the same.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cnnlab.cli.output import print_json
from cnnlab.errors import ConfigError

SHOW_WINDOWS_MAX = 36  # list every window only when there are at most this many
NUMERIC_TEXT = re.compile(r"^[\s\d.,eE+\-]+$")  # "2 3\n5 6": rows of numbers, not a file name
RENAMED_NOTE = (
    "cnnlab: note: 'cnnlab pool' is now 'cnnlab shapes pool-matrix'; "
    "the old name goes in the next release"
)


def add_pool_matrix_parser(sub, common, name: str, help_text: str, func) -> None:
    """The matrix-pooling parser, under `cnnlab shapes` or (the old name) `cnnlab`."""
    p = sub.add_parser(name, parents=[common], help=help_text)
    p.add_argument(
        "matrix",
        metavar="MATRIX",
        help='a matrix like "[[2,3],[5,6]]", a file holding one (or rows of numbers), or - for stdin',
    )
    p.add_argument(
        "--op", choices=["max", "avg", "both"], default="both", help="which pooling (default: both)"
    )
    p.add_argument("--kernel", type=int, default=2, metavar="K", help="window size K x K (default: 2)")
    p.add_argument(
        "--stride",
        type=int,
        default=None,
        metavar="S",
        help="step between windows (default: the kernel size)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=func, torch_free=True)


def register(sub, common) -> None:
    add_pool_matrix_parser(
        sub, common, "pool", "deprecated: use 'cnnlab shapes pool-matrix'", cmd_pool_renamed
    )


def _is_file(path: Path) -> bool:
    """Path.is_file() that says False for names the OS refuses (a long literal is no file)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _read_matrix_arg(arg: str):
    """MATRIX: '-' for stdin, an existing file, or the literal text itself."""
    from cnnlab.pooling import MAX_TEXT_CHARS, parse_matrix

    if arg == "-":
        return parse_matrix(sys.stdin.read(MAX_TEXT_CHARS + 1), "stdin")
    path = Path(arg)
    if _is_file(path):
        if path.stat().st_size > MAX_TEXT_CHARS:
            raise ConfigError(
                f"{path} is {path.stat().st_size:,} bytes; the limit is {MAX_TEXT_CHARS:,}"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(
                f"{path} is not a text file; write the matrix as [[2,3],[5,6]] or as rows of numbers"
            ) from None
        return parse_matrix(text, str(path))
    if arg.strip()[:1] in ("[", "(") or NUMERIC_TEXT.match(arg):
        return parse_matrix(arg, "MATRIX")
    raise ConfigError(
        f'MATRIX {arg[:60]!r} is neither a matrix like "[[2,3],[5,6]]" nor an existing file'
    )


def _num(v: float) -> str:
    """4.0 -> '4', 2.5 -> '2.5'."""
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.6g}"


def _matrix_text(rows, indent: str = "  ") -> str:
    """Rows of numbers, right-aligned in columns."""
    cells = [[_num(v) for v in r] for r in rows]
    width = max(len(c) for r in cells for c in r)
    return "\n".join(indent + " ".join(c.rjust(width) for c in r) for r in cells)


def _inline(rows) -> str:
    """[[2, 3], [5, 6]] in one line."""
    return "[" + ", ".join("[" + ", ".join(_num(v) for v in r) + "]" for r in rows) + "]"


def _print_windows(results: dict, ops: list[str]) -> None:
    """One line per window: where it sits, its cells and each pooling's value."""
    print("windows:")
    per_op = {op: list(r.windows()) for op, r in results.items()}
    for k, win in enumerate(per_op[ops[0]]):
        values = ", ".join(f"{op} {_num(per_op[op][k].value)}" for op in ops)
        print(
            f"  out[{win.out_row}][{win.out_col}]  rows {win.rows.start}-{win.rows.stop - 1}, "
            f"cols {win.cols.start}-{win.cols.stop - 1}  {_inline(win.cells)}  -> {values}"
        )


def cmd_pool_matrix(args) -> int:
    from cnnlab.pooling import pool_matrix

    matrix = _read_matrix_arg(args.matrix)
    ops = ["max", "avg"] if args.op == "both" else [args.op]
    results = {op: pool_matrix(matrix, op, args.kernel, args.stride) for op in ops}
    first = results[ops[0]]
    if args.json:
        print_json(
            {
                "input": matrix,
                "kernel": list(first.kernel),
                "stride": list(first.stride),
                **{op: r.output for op, r in results.items()},
            }
        )
        return 0
    (kh, kw), (sh, sw), (oh, ow) = first.kernel, first.stride, first.shape
    print(
        f"input {len(matrix)}x{len(matrix[0])}, kernel {kh}x{kw}, stride "
        f"{sh if sh == sw else (sh, sw)} -> output {oh}x{ow}"
    )
    names = {"max": "max pooling", "avg": "average pooling"}
    for op, r in results.items():
        print(f"{names[op]}:")
        print(_matrix_text(r.output))
    if oh * ow <= SHOW_WINDOWS_MAX:
        _print_windows(results, ops)
    return 0


def cmd_pool_renamed(args) -> int:
    print(RENAMED_NOTE, file=sys.stderr)
    return cmd_pool_matrix(args)
