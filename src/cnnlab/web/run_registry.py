"""Many run folders, one server: the runs a server offers, by name, loaded lazily into a bounded cache.

A run is a folder holding `model.safetensors`; its name is its path relative to the runs
folder with '/' between parts (`demo/cnn`), or, for a RUN given on the command line outside
it, the folder's own name. Listing reads only each run's safetensors header, metrics.json and
config.json (no model is built); `get` loads a run on first use and keeps at most `capacity`
loaded, dropping the least recently used. A name is looked up among the listed runs only, so
no request's text ever becomes a path.
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.errors import CheckpointError, CnnlabError, ConfigError

WEIGHTS = "model.safetensors"
DEFAULT_CAPACITY = 4  # loaded runs kept in memory (a cnn is a few MB; a wide one tens)
DEFAULT_NAME = "demo/cnn"  # what `cnnlab demo` writes under runs/
MAX_DEPTH = 4  # how deep under the runs folder run folders are looked for
MAX_RUNS = 500  # runs listed at most: a huge folder does not stall /api/runs
MAX_HEADER_BYTES = 1 << 20  # a safetensors header larger than this is not a cnnlab run
NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$")
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class RunNotFound(CnnlabError):
    """A run name the server does not offer (answered 404)."""


@dataclass
class LoadedRun:
    """A run loaded for serving: the run, its predictor and its conv/pool layers."""

    name: str
    run: object
    predictor: object
    layers: list = field(default_factory=list)
    weights_mtime_ns: int = 0  # of the weights loaded: a run retrained in place is reloaded

    @property
    def convs(self) -> list:
        """The convolution layers, in forward order."""
        return [ly for ly in self.layers if ly.kind == "conv"]


def check_name(name: str) -> str:
    """A run name as given, if it is a plain relative name; else ConfigError (400)."""
    if not isinstance(name, str) or not name or len(name) > 300:
        raise ConfigError(
            "run name must be 1..300 characters, e.g. ?run=demo/cnn (GET /api/runs lists them)"
        )
    if "\\" in name or name.startswith("/") or ":" in name:
        raise ConfigError(
            f"run name {name[:80]!r} must be relative with '/' between parts, e.g. demo/cnn"
        )
    if any(part in ("", ".", "..") for part in name.split("/")) or not NAME_RE.match(name):
        raise ConfigError(
            f"run name {name[:80]!r} may hold only letters, digits, '_.+-' and '/' between parts "
            "(no '..'); GET /api/runs lists the names"
        )
    return name


def header_summary(weights: Path) -> dict:
    """Model, dataset and parameter count from a safetensors header, without reading the tensors."""
    with open(weights, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{weights}: truncated (no safetensors header)")
        (size,) = struct.unpack("<Q", raw)
        if size > MAX_HEADER_BYTES:
            raise CheckpointError(f"{weights}: header of {size} bytes is too large for a cnnlab run")
        try:
            header = json.loads(f.read(size))
        except (ValueError, RecursionError):
            raise CheckpointError(f"{weights}: header is not valid JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{weights}: header is not a JSON object")
    meta = header.get("__metadata__") or {}
    params = 0
    for key, info in header.items():
        if key == "__metadata__" or key.endswith(BUFFERS) or not isinstance(info, dict):
            continue
        count = 1
        for s in info.get("shape") or []:
            count *= int(s) if isinstance(s, int) else 0
        params += count
    return {"model": meta.get("model_name"), "dataset": meta.get("dataset"), "parameters": params}


def describe_run(name: str, folder: Path) -> dict:
    """One entry of GET /api/runs: what the run's files say, or an `error` when unreadable."""
    from cnnlab.runs import CONFIG, METRICS, read_json

    entry: dict = {"name": name, "model": None, "dataset": None, "test_accuracy": None}
    entry.update({"epochs": None, "parameters": None, "error": None})
    try:
        entry.update(header_summary(folder / WEIGHTS))
        metrics = read_json(folder / METRICS) if (folder / METRICS).is_file() else None
        config = read_json(folder / CONFIG) if (folder / CONFIG).is_file() else None
    except (CnnlabError, OSError) as e:
        entry["error"] = str(e)
        return entry
    if isinstance(metrics, list) and metrics and isinstance(metrics[-1], dict):
        acc = metrics[-1].get("test_acc")
        entry["test_accuracy"] = float(acc) if isinstance(acc, int | float) else None
        entry["epochs"] = len(metrics)
    if isinstance(config, dict) and isinstance(config.get("recipe"), str):
        entry["recipe"] = config["recipe"]
    return entry


def scan_runs(root: Path) -> dict[str, Path]:
    """{name: folder} of every run folder under root (MAX_DEPTH deep, MAX_RUNS at most), sorted."""
    found: dict[str, Path] = {}
    stack = [(root, 0)]
    while stack and len(found) < MAX_RUNS:
        folder, depth = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        if any(e.name == WEIGHTS and e.is_file() for e in entries) and folder != root:
            rel = folder.relative_to(root).as_posix()
            if NAME_RE.match(rel):
                found[rel] = folder
        if depth < MAX_DEPTH:
            stack.extend((Path(e.path), depth + 1) for e in entries if e.is_dir(follow_symlinks=False))
    return dict(sorted(found.items()))


class RunRegistry:
    """The runs a server offers and a bounded LRU cache of the loaded ones (thread-safe).

    Args:
        runs: run folders given explicitly (the first is the default run).
        runs_dir: a folder whose run folders are offered too (scanned on each listing).
        capacity: loaded runs kept at most (>= 1).

    Raises:
        ConfigError: a capacity below 1, or no run at all to serve.
    """

    def __init__(self, runs: Sequence[str | os.PathLike] = (), runs_dir=None, capacity=DEFAULT_CAPACITY):
        if capacity < 1:
            raise ConfigError(f"run cache capacity must be >= 1, not {capacity}")
        self.capacity = capacity
        self.runs_dir = Path(runs_dir).resolve() if runs_dir is not None else None
        self._given: dict[str, Path] = {}
        for r in runs:
            self._given.setdefault(self._name_for(Path(r).resolve()), Path(r).resolve())
        self._cache: OrderedDict[str, LoadedRun] = OrderedDict()
        self._lock = threading.Lock()
        names = self.names()
        if not names:
            raise ConfigError(
                f"no run folders to serve (none given, none under {self.runs_dir}); train one with "
                "`cnnlab train --out runs/mine` or run `make demo`"
            )
        given = list(self._given)
        self.default = (
            given[0] if given else (DEFAULT_NAME if DEFAULT_NAME in names else next(iter(names)))
        )

    def _name_for(self, folder: Path) -> str:
        """The name of an explicit RUN: relative to runs_dir when inside it, else its folder name."""
        if (
            self.runs_dir is not None
            and folder.is_relative_to(self.runs_dir)
            and folder != self.runs_dir
        ):
            return folder.relative_to(self.runs_dir).as_posix()
        name, n = folder.name or "run", 2
        while name in self._given:
            name, n = f"{folder.name}-{n}", n + 1
        return name

    def names(self) -> dict[str, Path]:
        """{name: folder} of every run offered: the given ones first, then the scanned ones."""
        scanned = scan_runs(self.runs_dir) if self.runs_dir and self.runs_dir.is_dir() else {}
        return {**self._given, **{k: v for k, v in scanned.items() if k not in self._given}}

    def listing(self) -> list[dict]:
        """GET /api/runs's entries, in `names` order."""
        return [describe_run(name, folder) for name, folder in self.names().items()]

    def loaded(self) -> list[str]:
        """Names of the runs in memory, least recently used first."""
        with self._lock:
            return list(self._cache)

    def get(self, name: str | None = None) -> LoadedRun:
        """The loaded run called `name` (default: the default run), loading it if need be.

        Raises:
            ConfigError: a malformed name. RunNotFound: a name not offered.
            CheckpointError: the run folder cannot be loaded.
        """
        name = self.default if name is None else check_name(name)
        with self._lock:
            if name in self._cache and not _stale(self._cache[name]):
                self._cache.move_to_end(name)
                return self._cache[name]
        folder = self.names().get(name)
        if folder is None:
            raise RunNotFound(f"no run {name!r} on this server; GET /api/runs lists the runs")
        loaded = _load(name, folder)
        with self._lock:
            self._cache[name] = loaded
            self._cache.move_to_end(name)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return loaded


def _mtime_ns(folder: Path) -> int:
    """The weights' modification time, 0 when unreadable."""
    try:
        return (folder / WEIGHTS).stat().st_mtime_ns
    except OSError:
        return 0


def _stale(loaded: LoadedRun) -> bool:
    """True when the run's weights changed since they were loaded (a resumed job)."""
    return _mtime_ns(loaded.run.path) != loaded.weights_mtime_ns


def _load(name: str, folder: Path) -> LoadedRun:
    """Load one run folder for serving."""
    from cnnlab.explain import conv_and_pool_layers
    from cnnlab.predict import Predictor
    from cnnlab.runs import load_run

    mtime = _mtime_ns(folder)
    run = load_run(folder)
    predictor = Predictor(run)
    return LoadedRun(name, run, predictor, conv_and_pool_layers(predictor.model), mtime)
