"""`cnnlab shapes conv|pool|solve|model` and `cnnlab pool`: the lesson's shape maths and pooling.

cnnlab shapes conv --input 28 28 --kernel 3 3              # 26x26, with the formula
cnnlab shapes solve --input 28 28 --kernel 2 4 --target 15 14
cnnlab shapes model lesson-cnn                             # per-layer table, Linear sizes
cnnlab pool --op both "[[2,3],[5,6]]"                      # max 6, avg 4, window by window
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from cnnlab.cli.output import format_table, print_json
from cnnlab.errors import ConfigError

DEFAULT_MODEL_INPUT = (1, 28, 28)  # MNIST; a run folder or --input says otherwise
SHOW_WINDOWS_MAX = 36  # list every window only when there are at most this many
SHOW_MATCHES_MAX = 20  # solver answers printed as a table
NUMERIC_TEXT = re.compile(r"^[\s\d.,eE+\-]+$")  # "2 3\n5 6": rows of numbers, not a file name


def _add_size(
    p,
    flag: str,
    metavar: str,
    what: str,
    default: list[int] | None = None,
    shown: str | None = None,
    required: bool = False,
) -> None:
    """A flag taking one value (both axes) or two (h w); `shown` describes a None default."""
    help_text = f"{what}: one value for both axes or two (h w)"
    if not required:
        help_text += f" (default: {shown or ' '.join(map(str, default))})"
    p.add_argument(
        flag, nargs="+", type=int, metavar=metavar, default=default, required=required, help=help_text
    )


def register(sub, common) -> None:
    shapes = sub.add_parser(
        "shapes", help="conv/pool output sizes, the stride/padding solver, a model's layer table"
    )
    shapes_sub = shapes.add_subparsers(dest="shapes_command", required=True, metavar="ACTION")

    p = shapes_sub.add_parser(
        "conv", parents=[common], help="output size of a convolution, with the lesson's formula"
    )
    _add_size(p, "--input", "N", "input height and width", required=True)
    _add_size(p, "--kernel", "F", "kernel size", required=True)
    _add_size(p, "--stride", "S", "stride", default=[1])
    p.add_argument(
        "--padding",
        nargs="+",
        default=["0"],
        metavar="P",
        help="padding: one int, two (h w), 'same' or 'valid' (default: 0)",
    )
    _add_size(p, "--dilation", "D", "dilation", default=[1])
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_conv)

    p = shapes_sub.add_parser(
        "pool", parents=[common], help="output size of max/avg pooling, with the formula"
    )
    _add_size(p, "--input", "N", "input height and width", required=True)
    _add_size(p, "--kernel", "F", "kernel size", required=True)
    _add_size(p, "--stride", "S", "stride", shown="the kernel size")
    _add_size(p, "--padding", "P", "padding, at most half the kernel", default=[0])
    _add_size(p, "--dilation", "D", "dilation (MaxPool2d only)", default=[1])
    p.add_argument(
        "--ceil-mode", action="store_true", help="round up like ceil_mode=True (default: round down)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_pool_size)

    p = shapes_sub.add_parser(
        "solve",
        parents=[common],
        help="every (stride, padding) that gives a target output size (exit 1 when none does)",
    )
    _add_size(p, "--input", "N", "input height and width", required=True)
    _add_size(p, "--kernel", "F", "kernel size", required=True)
    _add_size(p, "--target", "O", "wanted output height and width", required=True)
    p.add_argument("--max-stride", type=int, default=4, help="largest stride tried (default: 4)")
    p.add_argument(
        "--max-padding",
        type=int,
        default=None,
        help="largest padding tried (default: the dilated kernel size minus 1)",
    )
    _add_size(p, "--dilation", "D", "dilation, kept fixed", default=[1])
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_solve)

    p = shapes_sub.add_parser(
        "model", parents=[common], help="layer-by-layer shapes, parameters and MACs of a model"
    )
    p.add_argument(
        "model",
        metavar="NAME|RUN_DIR",
        help="a registered model name, a run folder or its model.safetensors",
    )
    p.add_argument(
        "--input",
        nargs=3,
        type=int,
        metavar=("C", "H", "W"),
        default=None,
        help="shape of one input image; a model NAME is built for it (default: the run's, else 1 28 28)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_model)

    p = sub.add_parser(
        "pool", parents=[common], help="max/average pooling of a small matrix, window by window"
    )
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
    p.set_defaults(func=cmd_pool)


def _pair(values, flag: str) -> tuple[int, int]:
    """[n] -> (n, n); [h, w] -> (h, w); more is a ConfigError."""
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    raise ConfigError(f"{flag} takes one value or two (h w), not {len(values)}: {values}")


def _padding(values: list[str]):
    """--padding tokens -> 'same' | 'valid' | (ph, pw)."""
    if len(values) == 1 and values[0] in ("same", "valid"):
        return values[0]
    try:
        return _pair([int(v) for v in values], "--padding")
    except ValueError:
        raise ConfigError(
            f"--padding takes one int, two ints (h w), 'same' or 'valid', not {' '.join(values)}"
        ) from None


def _axis_json(axis) -> dict:
    """An AxisSize as a dict, with its formula and note."""
    return {**dataclasses.asdict(axis), "formula": axis.formula(), "note": axis.note()}


def _print_output2d(out, as_json: bool) -> None:
    """The one-line description, both formulas and the uneven-stride notes."""
    if as_json:
        print_json(
            {
                "op": out.op,
                "output": list(out.size),
                "axes": {"h": _axis_json(out.h), "w": _axis_json(out.w)},
            }
        )
        return
    print(out.describe())
    for line in out.formula().splitlines():
        print(f"  {line}")
    for note in out.notes():
        print(f"  note: {note}")


def cmd_conv(args) -> int:
    from cnnlab.shapes import conv2d_output

    out = conv2d_output(
        _pair(args.input, "--input"),
        _pair(args.kernel, "--kernel"),
        _pair(args.stride, "--stride"),
        _padding(args.padding),
        _pair(args.dilation, "--dilation"),
    )
    _print_output2d(out, args.json)
    return 0


def cmd_pool_size(args) -> int:
    from cnnlab.shapes import pool2d_output

    stride = None if args.stride is None else _pair(args.stride, "--stride")
    out = pool2d_output(
        _pair(args.input, "--input"),
        _pair(args.kernel, "--kernel"),
        stride,
        _pair(args.padding, "--padding"),
        _pair(args.dilation, "--dilation"),
        args.ceil_mode,
    )
    _print_output2d(out, args.json)
    return 0


def cmd_solve(args) -> int:
    from cnnlab.shapes import solve_conv

    sol = solve_conv(
        _pair(args.input, "--input"),
        _pair(args.kernel, "--kernel"),
        _pair(args.target, "--target"),
        args.max_stride,
        args.max_padding,
        _pair(args.dilation, "--dilation"),
    )
    if args.json:
        print_json(dataclasses.asdict(sol))
        return 0
    (nh, nw), (kh, kw), (th, tw) = sol.input_size, sol.kernel, sol.target
    print(
        f"input {nh}x{nw}, kernel {kh}x{kw} -> target {th}x{tw} "
        f"(strides 1..{sol.max_stride}, paddings 0..{sol.max_padding})"
    )
    if sol.matches:
        rows = [
            [i + 1, c.as_args(), f"{c.size[0]}x{c.size[1]}"]
            for i, c in enumerate(sol.matches[:SHOW_MATCHES_MAX])
        ]
        print(format_table(["#", "F.conv2d(...)", "output"], rows, align="rll"))
        if len(sol.matches) > SHOW_MATCHES_MAX:
            print(f"... and {len(sol.matches) - SHOW_MATCHES_MAX} more (--json lists them all)")
        print(f"simplest: F.conv2d(image, filter, {sol.best.as_args()})")
        return 0
    print(f"nothing in that range gives {th}x{tw}; the nearest sizes:")
    rows = [[c.as_args(), f"{c.size[0]}x{c.size[1]}"] for c in sol.nearest]
    print(format_table(["F.conv2d(...)", "output"], rows, align="ll"))
    print("try a larger --max-stride / --max-padding, another kernel, or a pooling layer")
    return 1


def _load_model(target: str, input_shape: tuple[int, ...] | None):
    """NAME -> a model built for `input_shape` (default 1x28x28); RUN_DIR -> its trained model.

    Returns (model, name, the input shape to summarise with).
    """
    if Path(target).is_dir() or target.endswith(".safetensors"):
        from cnnlab.runs import load_run

        run = load_run(target)
        # --input on a run checks the trained model against another input size
        return run.model, run.model_name, input_shape or tuple(run.input_shape)
    from cnnlab.models import get_model

    shape = input_shape or DEFAULT_MODEL_INPUT
    return get_model(target, input_shape=shape), target, shape


def _in_features_cell(layer, mismatched: set[str]) -> str:
    """'256' when the Linear fits, 'has 16, needs 256 !' when it does not, '' otherwise."""
    if layer.in_features is None:
        return ""
    if layer.name in mismatched:
        return f"has {layer.in_features}, needs {layer.needs}  <-- wrong"
    return f"{layer.in_features}"


def cmd_model(args) -> int:
    from cnnlab.summary import format_shape, summarize

    model, name, shape = _load_model(args.model, tuple(args.input) if args.input else None)
    summary = summarize(model, shape)
    summary.model = name
    if args.json:
        print_json(
            {
                **dataclasses.asdict(summary),
                "total_macs": summary.total_macs,
                "ok": summary.ok,
                "mismatch_messages": [m.message() for m in summary.mismatches],
            }
        )
        summary.check()
        return 0
    b = summary.batch
    bad = {m.name for m in summary.mismatches}
    print(f"{name} ({type(model).__name__}) on input {format_shape((b, *shape), b)}, B = batch size")
    rows = [
        [
            layer.name,
            layer.type,
            format_shape(layer.output_shape, b),
            f"{layer.params:,}",
            f"{layer.macs:,}",
            _in_features_cell(layer, bad),
        ]
        for layer in summary.layers
    ]
    print(
        format_table(
            ["layer", "type", "output", "params", "MACs/image", "in_features"], rows, align="lllrrl"
        )
    )
    out = format_shape(summary.output_shape, b) if summary.output_shape else "none"
    print(
        f"total: {summary.total_params:,} parameters ({summary.trainable_params:,} trainable), "
        f"{summary.total_macs:,} MACs per image, output {out}"
    )
    summary.check()  # a wrong Linear: the table above, then one error line and exit 2
    return 0


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


def cmd_pool(args) -> int:
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
        print("windows:")
        per_op = {op: list(r.windows()) for op, r in results.items()}
        for k, win in enumerate(per_op[ops[0]]):
            values = ", ".join(f"{op} {_num(per_op[op][k].value)}" for op in ops)
            print(
                f"  out[{win.out_row}][{win.out_col}]  rows {win.rows.start}-{win.rows.stop - 1}, "
                f"cols {win.cols.start}-{win.cols.stop - 1}  {_inline(win.cells)}  -> {values}"
            )
    return 0
