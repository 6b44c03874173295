"""Max and average pooling on a small matrix, window by window: the lesson's pooling exercise.

`pool_matrix([[2, 3], [5, 6]], "max")` gives [[6]] and "avg" gives [[4]]; each `Window` says
which rows and columns it covered and the value it produced. Plain Python, no torch (the tests
check the numbers against `F.max_pool2d` / `F.avg_pool2d`). Sizes come from `cnnlab.shapes`,
so an impossible kernel raises the same `ShapeError` as `cnnlab shapes pool`.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.shapes import IntPair, pool2d_output

MAX_CELLS = 1_000_000  # 1000x1000: plenty to learn from, still instant in plain Python
MAX_TEXT_CHARS = 16 * 1024 * 1024  # refuse to parse more text than that
OPS = ("max", "avg")

Matrix = list[list[float]]


def _number(value, where: str) -> float:
    """A finite int/float from the parsed text, else ConfigError naming where it was."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{where}: {value!r} is not a number; a matrix holds numbers only, like [[2,3],[5,6]]"
        )
    try:
        number = float(value)
    except OverflowError:  # an int with hundreds of digits
        raise ConfigError(f"{where}: a {len(str(value))}-digit number is too large") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return number


def _parse_literal(text: str, source: str):
    """'[[2,3],[5,6]]' -> nested lists, by json then ast.literal_eval (never eval)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)  # also takes tuples, trailing commas, 1_000
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        raise ConfigError(
            f"{source}: cannot read {text[:40]!r} as a matrix ({type(e).__name__}); "
            f"write it like [[2,3],[5,6]]"
        ) from None


def _parse_whitespace(text: str) -> list[list[str]]:
    """Rows of numbers separated by spaces or commas, one row a line; '#' starts a comment."""
    rows = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].replace(",", " ").strip()
        if line:
            rows.append(line.split())
    return rows


def _to_float(token: str, where: str) -> float:
    """One whitespace-separated token -> float."""
    try:
        return _number(float(token), where)
    except ValueError:
        raise ConfigError(f"{where}: {token!r} is not a number") from None


def parse_matrix(text: str, source: str = "MATRIX") -> Matrix:
    """Read a 2-D matrix from text: a literal like "[[2,3],[5,6]]" or rows of numbers.

    Args:
        text: a JSON/Python list of rows, or one row per line with numbers separated by
            spaces or commas ('#' starts a comment).
        source: what to call the text in error messages (a file name, "MATRIX").

    Returns:
        The rows as lists of floats.

    Raises:
        ConfigError: text that is not a matrix of finite numbers, or too large.
        ShapeError: an empty matrix or rows of different lengths.
    """
    if len(text) > MAX_TEXT_CHARS:
        raise ConfigError(f"{source} is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}")
    text = text.strip()
    if not text:
        raise ShapeError(f"{source} is empty; give at least one row, like [[2,3],[5,6]]")
    if text[0] in "[(":
        value = _parse_literal(text, source)
        if not isinstance(value, list | tuple) or not all(isinstance(r, list | tuple) for r in value):
            raise ConfigError(
                f"{source}: a matrix is a list of rows, like [[2,3],[5,6]], not {text[:40]!r}"
            )
        rows = [
            [_number(v, f"{source} row {i}, column {j}") for j, v in enumerate(r)]
            for i, r in enumerate(value)
        ]
    else:
        rows = [
            [_to_float(t, f"{source} row {i}, column {j}") for j, t in enumerate(r)]
            for i, r in enumerate(_parse_whitespace(text))
        ]
    check_matrix(rows, source)
    return rows


def check_matrix(rows: Matrix, source: str = "MATRIX") -> None:
    """Raise ShapeError unless `rows` is a non-empty rectangle; ConfigError if too large."""
    if not rows or not rows[0]:
        raise ShapeError(f"{source} is empty; give at least one row with one number")
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ShapeError(
                f"{source} is ragged: row 0 has {width} numbers but row {i} has "
                f"{len(r)}; every row needs the same length"
            )
    if len(rows) * width > MAX_CELLS:
        raise ConfigError(
            f"{source} is {len(rows)}x{width} = {len(rows) * width:,} numbers; "
            f"the limit is {MAX_CELLS:,}"
        )


@dataclass(frozen=True)
class Window:
    """One pooling window: the output cell it fills, the input it covers, the value it gives."""

    out_row: int
    out_col: int
    rows: range
    cols: range
    cells: Matrix
    value: float


@dataclass(frozen=True)
class PoolResult:
    """Max or average pooling of a matrix.

    Attributes:
        op: "max" or "avg".
        matrix: the input rows.
        kernel: (kh, kw).
        stride: (sh, sw).
        output: the pooled rows.
    """

    op: str
    matrix: Matrix
    kernel: tuple[int, int]
    stride: tuple[int, int]
    output: Matrix

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the output."""
        return (len(self.output), len(self.output[0]))

    def windows(self) -> Iterator[Window]:
        """Every window, row by row, with the cells it covered and its value."""
        (kh, kw), (sh, sw) = self.kernel, self.stride
        for i, row in enumerate(self.output):
            for j, value in enumerate(row):
                rows, cols = range(i * sh, i * sh + kh), range(j * sw, j * sw + kw)
                cells = [self.matrix[r][cols.start : cols.stop] for r in rows]
                yield Window(i, j, rows, cols, cells, value)


def pool_matrix(
    matrix: Matrix, op: str, kernel: IntPair = 2, stride: IntPair | None = None
) -> PoolResult:
    """Max or average pooling without padding, as `F.max_pool2d` / `F.avg_pool2d` compute it.

    Args:
        matrix: rows of numbers (see `parse_matrix`).
        op: "max" or "avg".
        kernel: k or (kh, kw).
        stride: s or (sh, sw); None means the kernel, as in PyTorch.

    Returns:
        A `PoolResult`.

    Raises:
        ConfigError: an unknown op.
        ShapeError: a bad matrix, or a kernel/stride PyTorch would refuse.
    """
    if op not in OPS:
        raise ConfigError(f"pooling op {op!r} is unknown; use one of {', '.join(OPS)}")
    check_matrix(matrix)
    size = pool2d_output((len(matrix), len(matrix[0])), kernel, stride)
    (kh, kw), (sh, sw) = (size.h.kernel, size.w.kernel), (size.h.stride, size.w.stride)
    reduce = max if op == "max" else (lambda xs: sum(xs) / len(xs))
    output = [
        [
            reduce(
                [matrix[r][c] for r in range(i * sh, i * sh + kh) for c in range(j * sw, j * sw + kw)]
            )
            for j in range(size.w.out)
        ]
        for i in range(size.h.out)
    ]
    return PoolResult(op, matrix, (kh, kw), (sh, sw), output)
