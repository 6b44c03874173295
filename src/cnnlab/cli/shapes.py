"""`cnnlab shapes conv|pool|solve|model|pool-matrix`: the lesson's shape maths and pooling.

cnnlab shapes conv --input 28 28 --kernel 3 3              # 26x26, with the formula
cnnlab shapes pool --input 24 24 --kernel 2                # 12x12: a pooling layer's output size
cnnlab shapes solve --input 28 28 --kernel 2 4 --target 15 14
cnnlab shapes model lesson-cnn                             # per-layer table, Linear sizes
cnnlab shapes pool-matrix --op both "[[2,3],[5,6]]"        # pooling itself: see cnnlab.cli.pool
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cnnlab.cli import pool
from cnnlab.cli.output import format_table, print_json
from cnnlab.errors import ConfigError

DEFAULT_MODEL_INPUT = (1, 28, 28)  # MNIST; a run folder or --input says otherwise
SHOW_MATCHES_MAX = 20  # solver answers printed as a table


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


def _add_conv(shapes_sub, common) -> None:
    """`cnnlab shapes conv`."""
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
    p.set_defaults(func=cmd_conv, torch_free=True)


def _add_pool_size(shapes_sub, common) -> None:
    """`cnnlab shapes pool`: the output size of a pooling layer (pooling a matrix is pool-matrix)."""
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
    p.set_defaults(func=cmd_pool_size, torch_free=True)


def _add_solve(shapes_sub, common) -> None:
    """`cnnlab shapes solve`."""
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
    p.set_defaults(func=cmd_solve, torch_free=True)


def _add_model(shapes_sub, common) -> None:
    """`cnnlab shapes model`."""
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


def register(sub, common) -> None:
    shapes = sub.add_parser(
        "shapes",
        help="conv/pool output sizes, stride/padding solver, layer tables, matrix pooling",
    )
    shapes_sub = shapes.add_subparsers(dest="shapes_command", required=True, metavar="ACTION")
    _add_conv(shapes_sub, common)
    _add_pool_size(shapes_sub, common)
    _add_solve(shapes_sub, common)
    _add_model(shapes_sub, common)
    pool.add_pool_matrix_parser(
        shapes_sub,
        common,
        "pool-matrix",
        "max/average pooling of a small matrix, window by window",
        pool.cmd_pool_matrix,
    )


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
    from cnnlab.shape_solver import solve_conv

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
