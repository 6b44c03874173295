"""The one atomic file writer: every file cnnlab writes goes through `atomic_write`.

A file is written to `NAME.part`, flushed and fsynced, then renamed over `NAME`, and the folder
is fsynced so the rename survives a power cut. An interrupted write (a kill, Ctrl-C, a full
disk) therefore leaves the previous good file untouched and at most a `.part` that no loader
reads and `remove_stale_parts` deletes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PART_SUFFIX = ".part"


def part_path(path: str | os.PathLike) -> Path:
    """Where `atomic_write` stages `path`."""
    path = Path(path)
    return path.with_name(path.name + PART_SUFFIX)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform can open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(part)` to fill the staging file, then make it `path` in one rename.

    Args:
        path: the file to (re)place; its folder is created when missing.
        write: writes the whole content to the path it is given.

    Raises:
        OSError: the write failed (disk full, read-only, ...); `path` is as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(path)
    try:
        write(part)
        _fsync_file(part)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    return atomic_write(path, lambda p: p.write_text(text))


def json_default(obj: Any) -> Any:
    """JSON for the few non-JSON types cnnlab stores (paths, tuples)."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write obj as indented JSON, atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def remove_stale_parts(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the `.part` files of `names` that a killed process left in `folder`."""
    stale = [p for p in (part_path(Path(folder) / n) for n in names) if p.is_file()]
    for part in stale:
        part.unlink(missing_ok=True)
    return stale
