"""Checks of builder options: type and range, or a ConfigError naming the option and the fix.

Options arrive from `--model-kwargs` JSON and from the metadata of weights files, so anything
may come: `"16"`, `1e100`, `[8] * 1000`, NaN. Each check returns the value as the builder uses it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from cnnlab.errors import ConfigError


def _show(value: object) -> str:
    """repr of a value, cut short: a hostile file may hold a list of a million numbers."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bad(model: str, option: str, value: object, rule: str, over: bool = False) -> ConfigError:
    """The one error of this module: which option, what it was, what it must be."""
    limit = " is over the limit" if over else ""
    return ConfigError(
        f"model {model!r}: bad option {option}={_show(value)}{limit}: {option} must be {rule}"
    )


def _is_int(value: object) -> bool:
    """An int (numpy's too), not a bool, not an integral float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def int_option(model: str, option: str, value: object, low: int, high: int, why: str = "") -> int:
    """`value` as an int from `low` to `high`; `why` explains the range in the message."""
    if not _is_int(value) or not low <= value <= high:  # type: ignore[operator]
        over = _is_int(value) and value > high  # type: ignore[operator]
        raise _bad(model, option, value, f"an int from {low} to {high}{why}", over)
    return int(value)  # type: ignore[arg-type]


def ints_option(
    model: str, option: str, value: object, low: int, high: int, count: int | tuple[int, int]
) -> tuple[int, ...]:
    """A list or tuple of `count` ints (exactly, or (fewest, most)), each from `low` to `high`."""
    fewest, most = (count, count) if isinstance(count, int) else count
    if (
        not isinstance(value, list | tuple)
        or not fewest <= len(value) <= most
        or not all(_is_int(v) and low <= v <= high for v in value)
    ):
        how_many = f"{fewest}" if fewest == most else f"{fewest} to {most}"
        over = isinstance(value, list | tuple) and (
            len(value) > most or any(_is_int(v) and v > high for v in value)
        )
        raise _bad(model, option, value, f"a list of {how_many} ints, each from {low} to {high}", over)
    return tuple(int(v) for v in value)


def fraction_option(model: str, option: str, value: object) -> float:
    """A number from 0 up to, not including, 1 (a dropout probability)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0 <= value < 1:  # type: ignore[operator]  (NaN fails both comparisons)
        raise _bad(model, option, value, "a number from 0 up to (not including) 1")
    return float(value)  # type: ignore[arg-type]


def choice_option(model: str, option: str, value: object, choices: Sequence[str]) -> str:
    """One of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise _bad(model, option, value, f"one of {', '.join(choices)}")
    return value
