"""The lesson's shape arithmetic as an API: `cnnlab.shapes` (and its solver) is the one
implementation; the Shapes page only shows what these answer."""

from __future__ import annotations

import dataclasses
from typing import Literal

from fastapi import APIRouter, Query

from cnnlab.errors import ShapeError
from cnnlab.web.errors import ERRORS

router = APIRouter(prefix="/api/shapes", responses=ERRORS)
MAX_SIDE = 100_000  # larger sizes are typos, and their window lists would be huge
PAIR = "one int for both axes or two as H,W"


def parse_pair(text: str, what: str, low: int = 0) -> tuple[int, int]:
    """'28' -> (28, 28); '28,14' -> (28, 14); anything else is a ShapeError (400)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ShapeError(f"{what} {text[:40]!r} must be {PAIR}, e.g. 28 or 28,28") from None
    if len(values) not in (1, 2) or not all(low <= v <= MAX_SIDE for v in values):
        raise ShapeError(f"{what} {text[:40]!r} must be {PAIR}, each {low}..{MAX_SIDE}")
    return (values[0], values[-1])


def _arg(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"({pair[0]}, {pair[1]})"


def _answer(out, code: str) -> dict:
    """An `Output2d` as JSON: the size, the formula with numbers, notes, windows, the code."""
    axes = {}
    for a in (out.h, out.w):
        starts = [i * a.stride - a.pad_before for i in range(min(a.out, 64))]
        axes[a.axis] = {
            **dataclasses.asdict(a),
            "formula": a.formula(),
            "note": a.note(),
            "starts": starts,
        }
    return {
        "output": list(out.size),
        "formula": out.formula(),
        "describe": out.describe(),
        "notes": out.notes(),
        "code": code,
        "axes": axes,
    }


@router.get("/conv", summary="Output size of a convolution")
def conv(
    input: str = Query(..., description=f"input size: {PAIR}"),
    kernel: str = Query(..., description=f"kernel size: {PAIR}"),
    stride: str = Query("1", description=PAIR),
    padding: str = Query("0", description=f"{PAIR}, or 'same' / 'valid'"),
    dilation: str = Query("1", description=PAIR),
    in_channels: int = Query(1, ge=1, le=4096),
    out_channels: int = Query(8, ge=1, le=4096),
) -> dict:
    """`cnnlab shapes conv`: the output size, the lesson's formula with these numbers, and the
    `nn.Conv2d` to copy; 400 where PyTorch would raise."""
    from cnnlab.shapes import conv2d_output

    pad = padding if padding in ("same", "valid") else parse_pair(padding, "padding")
    k, s, d = (
        parse_pair(kernel, "kernel", 1),
        parse_pair(stride, "stride", 1),
        parse_pair(dilation, "dilation", 1),
    )
    out = conv2d_output(parse_pair(input, "input", 1), k, s, pad, d)
    pad_arg = repr(pad) if isinstance(pad, str) else _arg(pad)
    code = (
        f"nn.Conv2d({in_channels}, {out_channels}, kernel_size={_arg(k)}, stride={_arg(s)}, "
        f"padding={pad_arg}"
    )
    return _answer(out, code + (f", dilation={_arg(d)})" if d != (1, 1) else ")"))


@router.get("/pool", summary="Output size of a pooling layer")
def pool(
    input: str = Query(..., description=f"input size: {PAIR}"),
    kernel: str = Query(..., description=f"kernel size: {PAIR}"),
    stride: str | None = Query(None, description=f"{PAIR} (default: the kernel size)"),
    padding: str = Query("0", description=f"{PAIR}, at most half the kernel"),
    dilation: str = Query("1", description=f"{PAIR} (MaxPool2d only)"),
    ceil_mode: bool = Query(False, description="round up instead of down"),
    op: Literal["max", "avg"] = Query("max"),
) -> dict:
    """`cnnlab shapes pool`: the output size, the formula and the `nn.MaxPool2d`/`AvgPool2d`."""
    from cnnlab.shapes import pool2d_output

    k, p, d = (
        parse_pair(kernel, "kernel", 1),
        parse_pair(padding, "padding"),
        parse_pair(dilation, "dilation", 1),
    )
    s = None if stride is None else parse_pair(stride, "stride", 1)
    if op == "avg" and d != (1, 1):
        raise ShapeError(f"AvgPool2d has no dilation: use dilation 1, not {dilation}")
    out = pool2d_output(parse_pair(input, "input", 1), k, s, p, d, ceil_mode)
    layer = "MaxPool2d" if op == "max" else "AvgPool2d"
    extra = f", dilation={_arg(d)}" if d != (1, 1) else ""
    code = (
        f"nn.{layer}(kernel_size={_arg(k)}, stride={_arg(s or k)}, padding={_arg(p)}{extra}, "
        f"ceil_mode={ceil_mode})"
    )
    return _answer(out, code)


@router.get("/solve", summary="Every stride and padding that gives a target size")
def solve(
    input: str = Query(..., description=f"input size: {PAIR}"),
    kernel: str = Query(..., description=f"kernel size: {PAIR}"),
    target: str = Query(..., description=f"wanted output size: {PAIR}"),
    max_stride: int = Query(4, description="largest stride tried, 1..32"),
    max_padding: int | None = Query(None, description="largest padding tried, 0..32"),
    dilation: str = Query("1", description=PAIR),
) -> dict:
    """`cnnlab shapes solve`: every (stride, padding), simplest first, or the nearest sizes."""
    from cnnlab.shape_solver import solve_conv

    sol = solve_conv(
        parse_pair(input, "input", 1),
        parse_pair(kernel, "kernel", 1),
        parse_pair(target, "target", 1),
        max_stride,
        max_padding,
        parse_pair(dilation, "dilation", 1),
    )
    out = dataclasses.asdict(sol)
    out["best"] = sol.best.as_args() if sol.best else None
    out["matches"] = [{**dataclasses.asdict(c), "args": c.as_args()} for c in sol.matches[:50]]
    out["nearest"] = [{**dataclasses.asdict(c), "args": c.as_args()} for c in sol.nearest]
    return out
