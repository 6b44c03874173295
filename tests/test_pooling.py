"""cnnlab.pooling: the lesson's pooling exercise, torch as the oracle, bad matrices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.pooling import MAX_CELLS, parse_matrix, pool_matrix


def test_lesson_exercise_max_6_avg_4():
    kernel = parse_matrix("[[2, 3], [5, 6]]")
    max_pooling = pool_matrix(kernel, "max", 2).output[0][0]
    average_pooling = pool_matrix(kernel, "avg", 2).output[0][0]
    assert int(max_pooling) == 6 and int(average_pooling) == 4  # the lesson's assert


@pytest.mark.parametrize(
    "shape,kernel,stride",
    [
        ((4, 4), 2, None),
        ((5, 7), 2, 1),
        ((6, 6), 3, 2),
        ((5, 5), (2, 3), (1, 2)),
        ((1, 9), (1, 4), 3),
    ],
)
def test_values_match_torch(shape, kernel, stride):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    rows = x.tolist()
    s = kernel if stride is None else stride
    for op, fn in (("max", F.max_pool2d), ("avg", F.avg_pool2d)):
        ours = torch.tensor(pool_matrix(rows, op, kernel, stride).output, dtype=torch.float64)
        theirs = fn(x[None, None], kernel, s)[0, 0]
        torch.testing.assert_close(ours, theirs)


def test_windows_say_what_they_covered():
    result = pool_matrix([[1, 2, 3, 4], [5, 6, 7, 8]], "max", 2)
    windows = list(result.windows())
    assert [(w.out_row, w.out_col, w.value) for w in windows] == [(0, 0, 6), (0, 1, 8)]
    assert windows[1].rows == range(0, 2) and windows[1].cols == range(2, 4)
    assert windows[1].cells == [[3, 4], [7, 8]]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("[[2,3],[5,6]]", [[2, 3], [5, 6]]),
        ("((2, 3), (5, 6),)", [[2, 3], [5, 6]]),  # Python literal, not JSON
        ("[[1.5, -2e1]]", [[1.5, -20]]),
        ("2 3\n5 6\n", [[2, 3], [5, 6]]),
        ("# a comment\n2, 3\n\n5, 6  # end\n", [[2, 3], [5, 6]]),
    ],
)
def test_parse_forms(text, expected):
    assert parse_matrix(text) == expected


@pytest.mark.parametrize(
    "text,error,match",
    [
        ("[[1,2],[3]]", ShapeError, "ragged: row 0 has 2 numbers but row 1 has 1"),
        ("[]", ShapeError, "empty"),
        ("[[]]", ShapeError, "empty"),
        ("   ", ShapeError, "empty"),
        ("[[1,'a']]", ConfigError, "row 0, column 1: 'a' is not a number"),
        ("[[1, true]]", ConfigError, "True is not a number"),
        ("[[1, NaN]]", ConfigError, "not a finite number"),
        ("[[1" + "0" * 400 + "]]", ConfigError, "401-digit number is too large"),
        ("[[1, [2]]]", ConfigError, "is not a number"),
        ("[1, 2, 3]", ConfigError, "list of rows"),
        ("[[1, 2]", ConfigError, "cannot read"),
        ("[[__import__('os').system('echo hi')]]", ConfigError, "cannot read"),  # never eval
        ("1 2\n3 x", ConfigError, "row 1, column 1: 'x' is not a number"),
    ],
)
def test_bad_matrices_are_one_line_errors(text, error, match):
    with pytest.raises(error, match=match) as e:
        parse_matrix(text)
    assert "\n" not in str(e.value)


def test_too_large_matrix():
    side = int(MAX_CELLS**0.5) + 1
    with pytest.raises(ConfigError, match="the limit is"):
        parse_matrix("\n".join(" ".join(["1"] * side) for _ in range(side)))


def test_kernel_larger_than_matrix_and_unknown_op():
    with pytest.raises(ShapeError, match="kernel 3 is larger than the input 2"):
        pool_matrix([[1, 2], [3, 4]], "max", 3)
    with pytest.raises(ConfigError, match="unknown"):
        pool_matrix([[1, 2], [3, 4]], "min", 2)
