"""What the routes share, injected with `Depends`: the runs registry, the work limiter and the
server's settings, all kept on `app.state` (no module globals), and the query parameters that
several endpoints take (`?run=`, the digit's move/rotate/scale)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Query, Request

from cnnlab.web.limits import WorkLimiter
from cnnlab.web.run_registry import LoadedRun, RunRegistry


@dataclass(frozen=True)
class Settings:
    """Per-server settings the routes read."""

    max_pixels: int
    data_root: Path | None
    static: dict[str, bytes]
    shift_cache: object  # routes_runs.ShiftCache


def get_registry(request: Request) -> RunRegistry:
    """The app's runs registry."""
    return request.app.state.registry


def get_limiter(request: Request) -> WorkLimiter:
    """The app's work limiter (bounds decodes and inferences in flight)."""
    return request.app.state.limiter


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


RUN_QUERY = Query(None, description="run name from GET /api/runs (default: the server's first run)")


RegistryDep = Annotated[RunRegistry, Depends(get_registry)]
LimiterDep = Annotated[WorkLimiter, Depends(get_limiter)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_run(registry: RegistryDep, run: str | None = RUN_QUERY) -> LoadedRun:
    """The run named by `?run=`, loaded (a sync dependency: loading runs in the thread pool)."""
    return registry.get(run)


@dataclass(frozen=True)
class Transform:
    """A move, turn and zoom of the 28x28 model input, after the dataset's preprocessing."""

    dx: float = 0.0
    dy: float = 0.0
    rotate: float = 0.0
    scale: float = 1.0

    @property
    def identity(self) -> bool:
        """True when it changes nothing."""
        return self.dx == 0 and self.dy == 0 and self.rotate == 0 and self.scale == 1


def get_transform(
    dx: float = Query(0.0, ge=-14, le=14, description="move right by this many input pixels"),
    dy: float = Query(0.0, ge=-14, le=14, description="move down by this many input pixels"),
    rotate: float = Query(0.0, ge=-180, le=180, description="turn clockwise, in degrees"),
    scale: float = Query(1.0, ge=0.5, le=2.0, description="zoom about the centre"),
) -> Transform:
    """The `?dx=&dy=&rotate=&scale=` of a predict-like request."""
    return Transform(dx, dy, rotate, scale)


RunDep = Annotated[LoadedRun, Depends(get_run)]
TransformDep = Annotated[Transform, Depends(get_transform)]
