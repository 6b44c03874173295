"""Small helpers the command modules share: tables, JSON, progress bars, output folders."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def format_table(headers: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A plain-text table; `align` is one char per column, 'l' or 'r' (default: numbers right)."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if align is None:
        align = "".join(
            "r" if rows and isinstance(rows[0][i], int | float) else "l" for i in range(len(headers))
        )

    def line(r):
        cols = (c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align, strict=True))
        return "  ".join(cols).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


def progress_enabled(args) -> bool:
    """Bars only for a person: not with --quiet, not when stderr is not a terminal."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def output_folder(path: str | os.PathLike, what: str, create: bool = True) -> Path:
    """Check up front that `path` is (or can become) a folder cnnlab may write into.

    Args:
        path: the folder.
        what: how the user named it, for the message (e.g. "--preview DIR").
        create: make the folder (and its parents) when missing; else only check it.

    Raises:
        ConfigError: one line naming the path and the fix when it is a file, cannot be made,
            or cannot be written.
    """
    from cnnlab.errors import ConfigError

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {folder}: is a file, not a folder; choose another path")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"{what} {folder}: cannot create the folder ({e.strerror or e}); "
                "choose a path you can write to"
            ) from None
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{what} {folder}: cannot write into the folder (permission denied); "
            "choose a folder you can write to or change its permissions"
        )
    return folder
