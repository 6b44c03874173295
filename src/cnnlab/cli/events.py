"""`cnnlab train --events FILE`: fit's progress as JSON lines, for a program watching the run.

Each line is one event dict: start, epoch_start, step, epoch_end, warning, interrupted (as fit
emits them), then a final `{"event": "done"}` or `{"event": "failed", "error": one line}`.
Lines are appended and flushed one by one, so a reader tailing the file sees whole lines.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable

from cnnlab.io import json_default

RELAYED = ("start", "epoch_start", "step", "epoch_end", "warning", "interrupted")


def _is_rank0() -> bool:
    """True outside torchrun and on its rank 0 (the only one that reports)."""
    return os.environ.get("RANK", "0") == "0"


def append_event(path: str | os.PathLike, event: dict) -> None:
    """Append one event as a JSON line (whole, flushed)."""
    line = json.dumps(event, default=json_default, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


class EventLog:
    """A fit callback that appends the relayed events to `path`, then calls `callback`."""

    def __init__(self, path: str | os.PathLike | None, callback: Callable[[dict], None]):
        self.path, self.callback = path, callback

    def __call__(self, event: dict) -> None:
        if self.path is not None and event.get("event") in RELAYED and _is_rank0():
            append_event(self.path, {k: _finite(v) for k, v in event.items()})
        self.callback(event)

    def close(self) -> None:
        """Close the wrapped callback's bar."""
        self.callback.close()


def _finite(value):
    """A NaN or infinite float as None (browsers read strict JSON only); anything else as is."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def with_final_event(command: Callable) -> Callable:
    """Wrap `cnnlab train`'s command so that --events FILE ends with a done or failed line."""

    @functools.wraps(command)
    def run(args) -> int:
        path = getattr(args, "events", None)
        try:
            code = command(args)
        except KeyboardInterrupt:
            if path and _is_rank0():
                append_event(path, {"event": "stopped", "code": 130})
            raise
        except Exception as e:
            if path and _is_rank0():
                append_event(path, {"event": "failed", "error": " ".join(str(e).split())[:500]})
            raise
        if path and _is_rank0():
            append_event(path, {"event": "done"} if code == 0 else {"event": "stopped", "code": code})
        return code

    return run
