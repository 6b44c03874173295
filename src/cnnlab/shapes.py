"""Output sizes of convolution and pooling layers: the lesson's formula, exactly as PyTorch does it.

Pure functions, no torch: `conv2d_output((28, 28), 3)` says 26x26, and its `formula()` shows the
lesson's formula with the numbers filled in (the wording lives in `cnnlab.shape_text`).
`cnnlab.shape_solver` finds every (stride, padding) that gives a target size; the per-layer
summary of a real model (which needs torch) lives in `cnnlab.summary`.

The formula, per axis (h = rows, w = columns), with effective kernel F' = d*(F-1)+1:

    O = floor((N - F' + p_before + p_after) / s) + 1          (PyTorch floors; pooling may ceil)

The lesson writes it as Oh = (Nh - Fh + 2p)/s + 1 for dilation 1 and equal padding on both sides.
When s does not divide (N - F' + 2p), the last rows/columns no window reaches are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab import shape_text
from cnnlab.errors import ShapeError
from cnnlab.shape_text import AXIS_NAMES, AXIS_UNITS

AXES = ("h", "w")

IntPair = int | tuple[int, int]
Padding = int | tuple[int, int] | str


@dataclass(frozen=True)
class AxisSize:
    """The output size along one axis, with everything needed to explain it.

    Attributes:
        axis: "h" or "w".
        op: "conv" or "pool".
        n: input size along the axis.
        kernel: kernel size F.
        stride: stride s.
        pad_before: zero rows/columns added before the input (top or left).
        pad_after: zero rows/columns added after it (bottom or right).
        dilation: d; the kernel then spans d*(F-1)+1 input positions.
        ceil_mode: pooling only: round up instead of down (PyTorch's ceil_mode).
        out: the output size O.
        leftover: padded rows/columns after the last window (0 when s divides evenly).
        ignored: of those, how many are real input rows/columns (not padding).
    """

    axis: str
    op: str
    n: int
    kernel: int
    stride: int
    pad_before: int
    pad_after: int
    dilation: int
    ceil_mode: bool
    out: int
    leftover: int
    ignored: int

    @property
    def effective_kernel(self) -> int:
        """The span of the dilated kernel, d*(F-1)+1."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def numerator(self) -> int:
        """N - F' + p_before + p_after: what the stride divides."""
        return self.n - self.effective_kernel + self.pad_before + self.pad_after

    @property
    def divides_evenly(self) -> bool:
        """True when the stride divides the numerator, so no rounding happens."""
        return self.numerator % self.stride == 0

    def formula(self) -> str:
        """The lesson's formula with the numbers substituted.

        Example: ``Oh = (Nh - Fh + 2p)/s + 1 = (28 - 3 + 2*0)/1 + 1 = 26``.
        """
        return shape_text.axis_formula(self)

    def note(self) -> str | None:
        """A sentence when the stride does not divide evenly, else None."""
        return shape_text.axis_note(self)


@dataclass(frozen=True)
class Output2d:
    """The output size of a 2-D conv or pooling layer: one `AxisSize` per axis."""

    op: str
    h: AxisSize
    w: AxisSize

    @property
    def size(self) -> tuple[int, int]:
        """(Oh, Ow)."""
        return (self.h.out, self.w.out)

    def formula(self) -> str:
        """Both axes' formulas, one per line."""
        return f"{self.h.formula()}\n{self.w.formula()}"

    def notes(self) -> list[str]:
        """The uneven-stride sentences (empty when both axes divide evenly)."""
        return [n for n in (self.h.note(), self.w.note()) if n]

    def describe(self) -> str:
        """One line: 'conv: input 28x28, kernel 3x3, stride 1, padding 0, dilation 1 -> 26x26'."""
        return shape_text.describe(self)


def as_pair(value: IntPair, what: str) -> tuple[int, int]:
    """An int or a pair of ints -> (h, w); anything else is a ShapeError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return (value[0], value[1])
    raise ShapeError(f"{what} must be an int or a pair of ints (h, w), not {value!r}")


def check_axis(
    axis: str, op: str, n: int, kernel: int, stride: int, pads: tuple[int, int], dilation: int
) -> None:
    """The checks PyTorch makes for both conv and pooling, with our messages."""
    where = f"{op}: axis {axis} ({AXIS_NAMES[axis]})"
    if n < 1:
        raise ShapeError(
            f"{where}: input size {n} is empty; the input needs at least 1 {AXIS_UNITS[axis][0]}"
        )
    if kernel < 1:
        raise ShapeError(f"{where}: kernel size {kernel} must be >= 1")
    if stride < 1:
        raise ShapeError(f"{where}: stride {stride} must be >= 1")
    if dilation < 1:
        raise ShapeError(f"{where}: dilation {dilation} must be >= 1 (1 means no dilation)")
    if min(pads) < 0:
        raise ShapeError(f"{where}: padding {min(pads)} is negative; use 0 or more")


def axis_output(
    op: str,
    axis: str,
    n: int,
    kernel: int,
    stride: int,
    pads: tuple[int, int],
    dilation: int,
    ceil_mode: bool,
) -> AxisSize:
    """The size along one axis after validation (PyTorch's conv/pooling_output_shape)."""
    eff = dilation * (kernel - 1) + 1
    padded = n + pads[0] + pads[1]
    num = padded - eff
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= n + pads[0]:
        out -= 1  # PyTorch: the last window must start inside the input or the left padding
    # conv refuses any kernel wider than the padded input; pooling only an empty output (in
    # ceil_mode one window may hang over the end by less than a stride)
    too_small = num < 0 if op == "conv" else out < 1
    if too_small:
        dil = f" (dilated to {eff})" if dilation > 1 else ""
        raise ShapeError(
            f"{op}: axis {axis} ({AXIS_NAMES[axis]}): kernel {kernel}{dil} is larger than the input "
            f"{n} plus padding {pads[0]}+{pads[1]} = {padded}; use a kernel of at most {padded}, "
            f"pad by at least {(eff - n + 1) // 2} on each side, or feed a larger input"
        )
    covered = (out - 1) * stride + eff  # padded positions up to the end of the last window
    leftover = max(0, padded - covered)
    ignored = max(0, leftover - pads[1])
    return AxisSize(
        axis, op, n, kernel, stride, pads[0], pads[1], dilation, ceil_mode, out, leftover, ignored
    )


def _paddings(
    padding: Padding, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Padding as given -> ((top, bottom), (left, right)); 'same' pads like nn.Conv2d."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding != "same":
            raise ShapeError(f"padding {padding!r} is unknown; use an int, a pair, 'same' or 'valid'")
        if stride != (1, 1):
            raise ShapeError(
                f"padding 'same' needs stride 1 (PyTorch refuses it for strided "
                f"convolutions), not stride {stride}; give the padding as a number"
            )
        pads = []
        for k, d in zip(kernel, dilation, strict=True):
            total = d * (k - 1)  # an even kernel pads one more at the end, as PyTorch does
            pads.append((total // 2, total - total // 2))
        return (pads[0], pads[1])
    ph, pw = as_pair(padding, "padding")
    return ((ph, ph), (pw, pw))


def conv2d_output(
    input_size: IntPair,
    kernel: IntPair,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
) -> Output2d:
    """The output size of `nn.Conv2d` (and `F.conv2d`) on an input of `input_size`.

    Args:
        input_size: N or (Nh, Nw).
        kernel: F or (Fh, Fw).
        stride: s or (sh, sw).
        padding: p, (ph, pw), "same" (stride 1 only; output size = input size) or "valid" (0).
        dilation: d or (dh, dw).

    Returns:
        An `Output2d`: `.size` is (Oh, Ow), `.formula()` the lesson's formula with numbers.

    Raises:
        ShapeError: where PyTorch would raise (kernel larger than the padded input, stride,
            kernel or dilation < 1, negative padding, 'same' with a stride), naming the axis.
    """
    n, k, s, d = (
        as_pair(v, name)
        for v, name in (
            (input_size, "input size"),
            (kernel, "kernel"),
            (stride, "stride"),
            (dilation, "dilation"),
        )
    )
    pads = _paddings(padding, k, s, d)
    axes = []
    for i, axis in enumerate(AXES):
        check_axis(axis, "conv", n[i], k[i], s[i], pads[i], d[i])
        axes.append(axis_output("conv", axis, n[i], k[i], s[i], pads[i], d[i], False))
    return Output2d("conv", *axes)


def pool2d_output(
    input_size: IntPair,
    kernel: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> Output2d:
    """The output size of `nn.MaxPool2d` / `nn.AvgPool2d` (AvgPool2d has no dilation: use 1).

    Args:
        input_size: N or (Nh, Nw).
        kernel: F or (Fh, Fw).
        stride: s or (sh, sw); None means the kernel size, as in PyTorch.
        padding: p or (ph, pw); PyTorch allows at most half the kernel.
        dilation: d or (dh, dw).
        ceil_mode: round up, keeping a last partial window if it starts inside the input.

    Returns:
        An `Output2d`.

    Raises:
        ShapeError: where PyTorch would raise, naming the axis and the fix.
    """
    n, k, d = (
        as_pair(v, name)
        for v, name in ((input_size, "input size"), (kernel, "kernel"), (dilation, "dilation"))
    )
    s = k if stride is None else as_pair(stride, "stride")
    if isinstance(padding, str):
        raise ShapeError(
            f"pooling padding must be a number or a pair, not {padding!r} "
            f"(PyTorch's pooling layers have no 'same')"
        )
    p = as_pair(padding, "padding")
    axes = []
    for i, axis in enumerate(AXES):
        check_axis(axis, "pool", n[i], k[i], s[i], (p[i], p[i]), d[i])
        if p[i] > k[i] // 2:
            raise ShapeError(
                f"pool: axis {axis} ({AXIS_NAMES[axis]}): padding {p[i]} is more than "
                f"half the kernel {k[i]}; PyTorch allows at most {k[i] // 2}"
            )
        axes.append(axis_output("pool", axis, n[i], k[i], s[i], (p[i], p[i]), d[i], ceil_mode))
    return Output2d("pool", *axes)


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output size along one axis of a convolution: floor((n - d*(k-1) - 1 + 2p)/s) + 1."""
    check_axis("h", "conv", n, kernel, stride, (padding, padding), dilation)
    return axis_output("conv", "h", n, kernel, stride, (padding, padding), dilation, False).out


def pool_output_size(
    n: int,
    kernel: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output size along one axis of max/avg pooling (stride defaults to the kernel)."""
    return pool2d_output(
        (n, 1),
        (kernel, 1),
        None if stride is None else (stride, 1),
        (padding, 0),
        (dilation, 1),
        ceil_mode,
    ).h.out
