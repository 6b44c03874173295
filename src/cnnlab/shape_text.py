"""The words and formulas behind `cnnlab.shapes`: what a person reads, never what is computed.

`axis_formula` writes the lesson's formula with the numbers filled in
(``Oh = (Nh - Fh + 2p)/s + 1 = (28 - 3 + 2*0)/1 + 1 = 26``), `axis_note` says in a sentence what
an uneven stride does ("the last 1 input row is ignored") and `describe` gives a layer in one
line. The sizes themselves come from `cnnlab.shapes`, whose `AxisSize` and `Output2d` call these
through their `formula()`, `note()` and `describe()` methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # shapes imports this module; the types are for annotations only
    from cnnlab.shapes import AxisSize, Output2d

AXIS_NAMES = {"h": "height", "w": "width"}
AXIS_UNITS = {"h": ("row", "rows"), "w": ("column", "columns")}


def axis_formula(a: AxisSize) -> str:
    """The lesson's formula for one axis with the numbers substituted.

    Args:
        a: the size along one axis, from `cnnlab.shapes`.

    Returns:
        For example ``Oh = (Nh - Fh + 2p)/s + 1 = (28 - 3 + 2*0)/1 + 1 = 26``; with floor or
        ceil written out when the stride does not divide evenly.
    """
    x = a.axis
    if a.dilation == 1:
        f_sym, f_num = f"F{x}", f"{a.kernel}"
    else:
        f_sym, f_num = f"(d*(F{x}-1)+1)", f"({a.dilation}*({a.kernel}-1)+1)"
    if a.pad_before == a.pad_after:
        p_sym, p_num = "2p", f"2*{a.pad_before}"
    else:
        p_sym, p_num = "p1 + p2", f"{a.pad_before} + {a.pad_after}"
    inner_sym = f"N{x} - {f_sym} + {p_sym}"
    inner_num = f"{a.n} - {f_num} + {p_num}"
    if a.divides_evenly:
        return f"O{x} = ({inner_sym})/s + 1 = ({inner_num})/{a.stride} + 1 = {a.out}"
    rnd = "ceil" if a.ceil_mode else "floor"
    text = (
        f"O{x} = {rnd}(({inner_sym})/s) + 1 = {rnd}(({inner_num})/{a.stride}) + 1"
        f" = {rnd}({a.numerator}/{a.stride}) + 1"
    )
    plain = -(-a.numerator // a.stride) + 1 if a.ceil_mode else a.out
    if plain != a.out:  # ceil_mode dropped a window that would start in the padding
        return f"{text} - 1 = {a.out} (the last window would start in the padding)"
    return f"{text} = {a.out}"


def axis_note(a: AxisSize) -> str | None:
    """A sentence on what an uneven stride does along one axis, or None when it divides evenly.

    Args:
        a: the size along one axis, from `cnnlab.shapes`.

    Returns:
        For example "Oh: stride 2 does not divide 25 evenly; PyTorch floors, so the last 1 input
        row is ignored", or None.
    """
    if a.divides_evenly:
        return None
    one, many = AXIS_UNITS[a.axis]
    head = f"O{a.axis}: stride {a.stride} does not divide {a.numerator} evenly; "
    if a.out > a.numerator // a.stride + 1:
        return head + "ceil_mode adds a last, partial window that runs past the input"
    if a.ceil_mode:
        head += "ceil_mode drops the window that would start in the padding, so as with floor, "
    else:
        head += "PyTorch floors, so "
    if a.ignored:
        unit, verb = (one, "is") if a.ignored == 1 else (many, "are")
        return head + f"the last {a.ignored} input {unit} {verb} ignored"
    unit, verb = (one, "is") if a.leftover == 1 else (many, "are")
    return head + f"the last {a.leftover} padded {unit} {verb} unused (no input is lost)"


def _pair_text(a: int, b: int) -> str:
    """'3' when both axes agree, '(3, 5)' when they differ."""
    return f"{a}" if a == b else f"({a}, {b})"


def describe(out: Output2d) -> str:
    """A layer in one line.

    Args:
        out: a conv or pooling output size, from `cnnlab.shapes`.

    Returns:
        For example 'conv: input 28x28, kernel 3x3, stride 1, padding 0, dilation 1 -> 26x26'.
    """
    h, w = out.h, out.w
    pads = ((h.pad_before, h.pad_after), (w.pad_before, w.pad_after))
    if pads[0][0] == pads[0][1] and pads[1][0] == pads[1][1]:
        pad = _pair_text(pads[0][0], pads[1][0])
    else:
        pad = f"top/bottom {pads[0]}, left/right {pads[1]}"
    text = (
        f"{out.op}: input {h.n}x{w.n}, kernel {h.kernel}x{w.kernel}, "
        f"stride {_pair_text(h.stride, w.stride)}, padding {pad}, "
        f"dilation {_pair_text(h.dilation, w.dilation)}"
    )
    if h.ceil_mode:
        text += ", ceil_mode"
    return f"{text} -> {h.out}x{w.out}"
