"""The stride/padding solver: every (stride, padding) that makes a convolution give a target size.

`solve_conv((28, 28), 3, target=(28, 28)).best` is `stride=1, padding=1`; when nothing in the
range matches, the `Solution` lists the nearest sizes instead. Pure Python, no torch: each
candidate's size comes from `cnnlab.shapes`, the one implementation of the formula.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from cnnlab.errors import ShapeError
from cnnlab.shapes import AXES, IntPair, as_pair, axis_output, check_axis

SOLVER_LIMIT = 32  # largest stride/padding the solver tries: keeps "every match" a short list

AxisSizes = dict[tuple[int, int], int]  # (stride, padding) -> output size along one axis


@dataclass(frozen=True)
class Candidate:
    """One (stride, padding) choice and the output size it gives."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    size: tuple[int, int]

    @property
    def uniform(self) -> bool:
        """True when one int each is enough: F.conv2d(stride=s, padding=p)."""
        return self.stride[0] == self.stride[1] and self.padding[0] == self.padding[1]

    def as_args(self) -> str:
        """How to write it in PyTorch: 'stride=1, padding=0' or 'stride=(2, 1), padding=(1, 0)'."""
        if self.uniform:
            return f"stride={self.stride[0]}, padding={self.padding[0]}"
        return f"stride={self.stride}, padding={self.padding}"


@dataclass(frozen=True)
class Solution:
    """What `solve_conv` found.

    Attributes:
        input_size, kernel, target, dilation: the question.
        max_stride, max_padding: how far the search went.
        matches: every choice that gives the target, simplest first (one int each first, then
            stride ascending, then padding ascending).
        nearest: when nothing matches, the choices whose size is closest to the target
            (smallest |Oh - target_h| + |Ow - target_w|, then simplest).
    """

    input_size: tuple[int, int]
    kernel: tuple[int, int]
    target: tuple[int, int]
    dilation: tuple[int, int]
    max_stride: int
    max_padding: int
    matches: list[Candidate] = field(default_factory=list)
    nearest: list[Candidate] = field(default_factory=list)

    @property
    def best(self) -> Candidate | None:
        """The simplest match, or None."""
        return self.matches[0] if self.matches else None


def _simplest_first(c: Candidate) -> tuple:
    """Sort key: one int each first, then the smaller stride, then the smaller padding."""
    return (not c.uniform, max(c.stride), c.stride, max(c.padding), c.padding)


def _axis_sizes(
    n: tuple[int, int], k: tuple[int, int], d: tuple[int, int], max_stride: int, max_padding: int
) -> list[AxisSizes]:
    """The output size of every (stride, padding) in range, per axis."""
    per_axis: list[AxisSizes] = [{}, {}]
    for i, (s, p) in itertools.product(
        range(2), itertools.product(range(1, max_stride + 1), range(max_padding + 1))
    ):
        try:
            per_axis[i][(s, p)] = axis_output("conv", AXES[i], n[i], k[i], s, (p, p), d[i], False).out
        except ShapeError:
            continue  # kernel larger than the padded input: not a candidate
    return per_axis


def _candidate(per_axis: list[AxisSizes], sp_h: tuple[int, int], sp_w: tuple[int, int]) -> Candidate:
    """The Candidate of one (stride, padding) for h and one for w."""
    return Candidate((sp_h[0], sp_w[0]), (sp_h[1], sp_w[1]), (per_axis[0][sp_h], per_axis[1][sp_w]))


def _nearest(per_axis: list[AxisSizes], t: tuple[int, int], n_nearest: int) -> list[Candidate]:
    """The `n_nearest` candidates closest to the target, simplest first among equals."""
    # the distance adds up per axis, so the nearest few per axis suffice
    near = [
        sorted(per_axis[i], key=lambda sp, i=i: (abs(per_axis[i][sp] - t[i]), sp))[: 4 * n_nearest]
        for i in range(2)
    ]
    return sorted(
        (_candidate(per_axis, a, b) for a in near[0] for b in near[1]),
        key=lambda c: (abs(c.size[0] - t[0]) + abs(c.size[1] - t[1]), _simplest_first(c)),
    )[:n_nearest]


def solve_conv(
    input_size: IntPair,
    kernel: IntPair,
    target: IntPair,
    max_stride: int = 4,
    max_padding: int | None = None,
    dilation: IntPair = 1,
    n_nearest: int = 5,
) -> Solution:
    """Every (stride, padding) that makes a convolution output `target`, simplest first.

    Args:
        input_size: N or (Nh, Nw).
        kernel: F or (Fh, Fw).
        target: the wanted (Oh, Ow).
        max_stride: largest stride tried (from 1).
        max_padding: largest padding tried (from 0); default the dilated kernel minus 1,
            beyond which some windows see nothing but zeros.
        dilation: d or (dh, dw), kept fixed.
        n_nearest: how many nearest sizes to give when nothing matches.

    Returns:
        A `Solution`. Choices with one stride and one padding for both axes come first, then
        per-axis ones (stride=(sh, sw), padding=(ph, pw)), each ordered by stride then padding.

    Raises:
        ShapeError: a target below 1x1, limits outside 1..32 (stride) or 0..32 (padding), or
            an invalid kernel, input or dilation.
    """
    n, k, t, d = (
        as_pair(v, name)
        for v, name in (
            (input_size, "input size"),
            (kernel, "kernel"),
            (target, "target"),
            (dilation, "dilation"),
        )
    )
    if min(t) < 1:
        raise ShapeError(f"target size {t[0]}x{t[1]} must be at least 1x1")
    if max_padding is None:
        max_padding = min(max(d[i] * (k[i] - 1) for i in range(2)), SOLVER_LIMIT)
    for what, value, low in (("max stride", max_stride, 1), ("max padding", max_padding, 0)):
        if not low <= value <= SOLVER_LIMIT:
            raise ShapeError(f"{what} {value} must be between {low} and {SOLVER_LIMIT}")
    for i, axis in enumerate(AXES):  # the fixed settings themselves must be valid
        check_axis(axis, "conv", n[i], k[i], 1, (0, 0), d[i])

    per_axis = _axis_sizes(n, k, d, max_stride, max_padding)
    hits = [[sp for sp, o in per_axis[i].items() if o == t[i]] for i in range(2)]
    matches = sorted((_candidate(per_axis, a, b) for a in hits[0] for b in hits[1]), key=_simplest_first)
    nearest = [] if matches else _nearest(per_axis, t, n_nearest)
    return Solution(n, k, t, d, max_stride, max_padding, matches, nearest)
