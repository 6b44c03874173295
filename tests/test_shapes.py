"""cnnlab.shapes and shape_solver against PyTorch as oracle; the lesson's three conv exercises."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzzing import fuzz_settings
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.shape_solver import solve_conv
from cnnlab.shapes import conv2d_output, conv_output_size, pool2d_output, pool_output_size

# One axis of a layer: (input size, kernel, stride, padding, dilation). Sizes 1..7 with kernels
# up to 4 and dilation up to 3 cover "fits", "fits exactly", "too large" and uneven strides.
AXIS_GRID = list(itertools.product(range(1, 8), range(1, 5), range(1, 4), range(4), range(1, 4)))


def _pairs(grid):
    """Pair each config (as the h axis) with another (as the w axis): non-square coverage."""
    n = len(grid)
    return [(grid[i], grid[(i * 7919 + 13) % n]) for i in range(n)]


def _torch_size(fn):
    """(Oh, Ow) from running fn, or None when torch raises."""
    try:
        return tuple(fn().shape[-2:])
    except (RuntimeError, ValueError):
        return None


def _ours(fn):
    """(Oh, Ow) from cnnlab.shapes, or None when it raises ShapeError."""
    try:
        return fn().size
    except ShapeError:
        return None


def _conv_case(h, w):
    (nh, kh, sh, ph, dh), (nw, kw, sw, pw, dw) = h, w
    x, weight = torch.zeros(1, 1, nh, nw), torch.zeros(1, 1, kh, kw)
    theirs = _torch_size(
        lambda: F.conv2d(x, weight, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))
    )
    ours = _ours(lambda: conv2d_output((nh, nw), (kh, kw), (sh, sw), (ph, pw), (dh, dw)))
    return ours, theirs


def test_conv_matches_torch_over_a_grid():
    cases = _pairs(AXIS_GRID)
    raised = 0
    for h, w in cases:
        ours, theirs = _conv_case(h, w)
        assert ours == theirs, (h, w)
        raised += theirs is None
    assert 0 < raised < len(cases)  # the grid really has both kinds


def test_conv_matches_nn_conv2d_module():
    for n, k, s, p, d in [(28, 3, 1, 0, 1), (28, 5, 2, 2, 1), (13, 3, 3, 1, 2), (7, 7, 1, 0, 1)]:
        layer = nn.Conv2d(3, 4, k, stride=s, padding=p, dilation=d)
        assert conv2d_output(n, k, s, p, d).size == tuple(layer(torch.zeros(1, 3, n, n)).shape[-2:])


def _pool_case(h, w, ceil_mode, kind=nn.MaxPool2d):
    """(ours, theirs) for one pooling layer; AvgPool2d takes no dilation."""
    (nh, kh, sh, ph, dh), (nw, kw, sw, pw, dw) = h, w
    extra = {} if kind is nn.AvgPool2d else {"dilation": (dh, dw)}
    layer = kind((kh, kw), (sh, sw), (ph, pw), ceil_mode=ceil_mode, **extra)
    theirs = _torch_size(lambda: layer(torch.zeros(1, 1, nh, nw)))
    dilation = (dh, dw) if extra else 1
    ours = _ours(lambda: pool2d_output((nh, nw), (kh, kw), (sh, sw), (ph, pw), dilation, ceil_mode))
    return ours, theirs


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_maxpool_matches_torch_over_a_grid(ceil_mode):
    raised = 0
    for h, w in _pairs([c for c in AXIS_GRID if c[3] < 3]):
        ours, theirs = _pool_case(h, w, ceil_mode)
        assert ours == theirs, (h, w)
        raised += theirs is None
    assert raised > 0


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_avgpool_matches_torch_over_a_grid(ceil_mode):
    for h, w in _pairs([c for c in AXIS_GRID if c[3] < 3 and c[4] == 1]):
        ours, theirs = _pool_case(h, w, ceil_mode, nn.AvgPool2d)
        assert ours == theirs, (h, w)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns about even kernels with 'same'
@pytest.mark.parametrize("n,k,d", list(itertools.product(range(1, 8), range(1, 6), range(1, 4))))
def test_same_padding_matches_nn_conv2d(n, k, d):
    layer = nn.Conv2d(1, 1, (k, 2), padding="same", dilation=(d, 1))
    theirs = _torch_size(lambda: layer(torch.zeros(1, 1, n, n)))
    assert _ours(lambda: conv2d_output(n, (k, 2), 1, "same", (d, 1))) == theirs


def test_same_padding_with_stride_is_refused_like_torch():
    with pytest.raises(ValueError):
        nn.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ShapeError, match="'same' needs stride 1"):
        conv2d_output(28, 3, 2, "same")
    assert conv2d_output(28, 3, 2, "valid").size == (13, 13)


@pytest.mark.parametrize(
    "n,k,s,p,d,expected",
    [
        (5, 3, 0, 0, 1, "stride 0 must be >= 1"),
        (5, 3, 1, -1, 1, "padding -1 is negative"),
        (5, 3, 1, 0, 0, "dilation 0 must be >= 1"),
        (5, 0, 1, 0, 1, "kernel size 0 must be >= 1"),
        (0, 3, 1, 0, 1, "input size 0 is empty"),
    ],
)
def test_invalid_settings_raise_where_torch_raises(n, k, s, p, d, expected):
    with pytest.raises(RuntimeError):
        F.conv2d(torch.zeros(1, 1, n, 5), torch.zeros(1, 1, k, 1), stride=s, padding=p, dilation=d)
    with pytest.raises(ShapeError, match=expected):
        conv_output_size(n, k, s, p, d)


def test_too_large_kernel_message_names_axis_numbers_and_fix():
    with pytest.raises(ShapeError) as e:
        conv2d_output((28, 4), (3, 5))
    msg = str(e.value)
    assert "axis w (width)" in msg and "kernel 5" in msg and "input 4" in msg
    assert "pad by at least 1" in msg


def test_pool_padding_more_than_half_kernel():
    with pytest.raises(RuntimeError):
        F.max_pool2d(torch.zeros(1, 1, 8, 8), 3, padding=2)
    with pytest.raises(ShapeError, match="padding 2 is more than half the kernel 3"):
        pool2d_output(8, 3, padding=2)
    with pytest.raises(ShapeError, match="no 'same'"):
        pool2d_output(8, 3, padding="same")


def test_one_axis_helpers():
    assert conv_output_size(28, 5) == 24
    assert pool_output_size(24, 2) == 12  # stride defaults to the kernel, as in PyTorch
    assert pool_output_size(5, 2, ceil_mode=True) == 3
    assert pool_output_size(5, 2) == 2


# -- the lesson's formula with the numbers in ---------------------------------------------------


def test_formula_is_the_lessons():
    out = conv2d_output((28, 28), (3, 3))
    assert out.h.formula() == "Oh = (Nh - Fh + 2p)/s + 1 = (28 - 3 + 2*0)/1 + 1 = 26"
    assert out.w.formula() == "Ow = (Nw - Fw + 2p)/s + 1 = (28 - 3 + 2*0)/1 + 1 = 26"
    assert out.notes() == []


def test_formula_with_dilation_uses_the_effective_kernel():
    out = conv2d_output(28, 3, dilation=2)
    assert out.h.effective_kernel == 5
    assert out.h.formula() == "Oh = (Nh - (d*(Fh-1)+1) + 2p)/s + 1 = (28 - (2*(3-1)+1) + 2*0)/1 + 1 = 24"


def test_uneven_stride_floors_and_says_what_is_ignored():
    out = conv2d_output((28, 28), 3, stride=2)
    assert out.size == (13, 13)
    assert out.h.formula().endswith("= floor(25/2) + 1 = 13")
    assert out.h.ignored == 1 and out.w.ignored == 1
    assert "the last 1 input row is ignored" in out.notes()[0]
    assert "the last 1 input column is ignored" in out.notes()[1]
    # 28 with kernel 5, stride 3: (28-5)/3 = 7.67 -> 8; windows cover 3*7+5 = 26, 2 rows left
    assert conv2d_output(28, 5, 3).h.ignored == 2
    # padding can absorb the remainder: nothing of the input is lost
    padded = conv2d_output(28, 3, 2, 1).h
    assert padded.leftover == 1 and padded.ignored == 0 and "no input is lost" in padded.note()


def test_ceil_mode_formula_and_dropped_window():
    partial = pool2d_output(5, 2, ceil_mode=True).h
    assert partial.out == 3 and partial.formula().endswith("ceil(3/2) + 1 = 3")
    assert "partial window" in partial.note()
    dropped = pool2d_output(5, 2, padding=1, ceil_mode=True).h
    assert dropped.out == 3 and "- 1 = 3" in dropped.formula()
    assert dropped.out == nn.MaxPool2d(2, padding=1, ceil_mode=True)(torch.zeros(1, 1, 5, 5)).shape[-1]


def test_asymmetric_same_padding_formula():
    out = conv2d_output(5, 4, padding="same")
    assert (out.h.pad_before, out.h.pad_after) == (1, 2)  # PyTorch puts the extra one at the end
    assert out.h.formula() == "Oh = (Nh - Fh + p1 + p2)/s + 1 = (5 - 4 + 1 + 2)/1 + 1 = 5"


# -- the solver: the lesson's three exercises ---------------------------------------------------


def _conv_shape(kernel, stride, padding):
    return tuple(
        F.conv2d(
            torch.randn(1, 1, 28, 28), torch.randn(1, 1, *kernel), stride=stride, padding=padding
        ).shape
    )


def test_exercise_1_26x26_is_stride_1_padding_0():
    best = solve_conv((28, 28), (3, 3), (26, 26)).best
    assert (best.stride, best.padding) == ((1, 1), (0, 0))
    assert _conv_shape((3, 3), best.stride, best.padding) == (1, 1, 26, 26)


def test_exercise_2_28x28_is_stride_1_padding_1():
    best = solve_conv((28, 28), (3, 3), (28, 28)).best
    assert (best.stride, best.padding) == ((1, 1), (1, 1))
    assert _conv_shape((3, 3), best.stride, best.padding) == (1, 1, 28, 28)


def test_exercise_3_2x4_kernel_15x14_is_stride_2_padding_1():
    sol = solve_conv((28, 28), (2, 4), (15, 14))
    assert sol.best.as_args() == "stride=2, padding=1"
    for c in sol.matches:  # every answer really gives 15x14
        assert _conv_shape((2, 4), c.stride, c.padding) == (1, 1, 15, 14)
    wider = solve_conv((28, 28), (2, 4), (15, 14), max_padding=9)
    assert [c.as_args() for c in wider.matches][:2] == ["stride=2, padding=1", "stride=3, padding=8"]


def test_solver_orders_simplest_first_and_lists_per_axis_choices():
    sol = solve_conv((28, 28), (3, 3), (26, 13), max_stride=2)
    assert all(not c.uniform for c in sol.matches)
    assert sol.best.as_args() == "stride=(1, 2), padding=(0, 0)"
    keys = [(max(c.stride), c.stride, max(c.padding), c.padding) for c in sol.matches]
    assert keys == sorted(keys)


def test_solver_without_answer_gives_nearest_sizes():
    sol = solve_conv((28, 28), (3, 3), (3, 40))
    assert sol.matches == [] and sol.best is None
    assert len(sol.nearest) == 5
    dist = [abs(c.size[0] - 3) + abs(c.size[1] - 40) for c in sol.nearest]
    assert dist == sorted(dist) and sol.nearest[0].size == (7, 30)


def test_solver_rejects_bad_target():
    with pytest.raises(ShapeError, match="at least 1x1"):
        solve_conv(28, 3, (0, 5))


# -- property test: random 2-D layers against torch --------------------------------------------

size, kern, strd, pad, dil = (
    st.integers(1, 12),
    st.integers(1, 6),
    st.integers(1, 4),
    st.integers(0, 4),
    st.integers(1, 3),
)


@pytest.mark.fuzz
@fuzz_settings(scale=1.5)  # tests/fuzzing.py: 300 examples in make test, 7500 in make fuzz
@given(st.tuples(size, kern, strd, pad, dil), st.tuples(size, kern, strd, pad, dil), st.booleans())
def test_random_layers_agree_with_torch(h, w, ceil_mode):
    ours, theirs = _conv_case(h, w)
    assert ours == theirs
    ours, theirs = _pool_case(h, w, ceil_mode)
    assert ours == theirs
    ours, theirs = _pool_case(h, w, ceil_mode, nn.AvgPool2d)
    assert ours == theirs
