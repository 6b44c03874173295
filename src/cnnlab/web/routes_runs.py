"""The runs a server offers: their list, one run's model card, liveness, and the measured
shift test (accuracy on test images moved right and down)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from fastapi import APIRouter, Query

from cnnlab.web.deps import LimiterDep, RegistryDep, RunDep, SettingsDep
from cnnlab.web.errors import ERRORS
from cnnlab.web.run_registry import LoadedRun
from cnnlab.web.schemas import Health, ModelCard, RunList, ShiftTest

router = APIRouter(responses=ERRORS)
SHIFT_CACHE_SIZE = 64  # (run, max_shift, n) answers kept


class ShiftCache:
    """Shift-test answers by (run, max_shift, n), least recently used dropped (thread-safe)."""

    def __init__(self, size: int = SHIFT_CACHE_SIZE):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        """The cached answer or None."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key, value) -> None:
        """Keep an answer."""
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def model_card(loaded: LoadedRun) -> dict:
    """GET /api/model's answer for a loaded run."""
    from cnnlab.models import count_parameters

    run = loaded.run
    metrics = run.metrics if isinstance(run.metrics, list) else []
    last = metrics[-1] if metrics and isinstance(metrics[-1], dict) else {}
    acc = last.get("test_acc")
    return {
        "run": loaded.name,
        "model": run.model_name,
        "model_kwargs": run.model_kwargs,
        "dataset": run.dataset,
        "classes": list(run.classes),
        "input_shape": list(run.input_shape),
        "parameters": count_parameters(loaded.predictor.model),
        "test_accuracy": float(acc) if isinstance(acc, int | float) else None,
        "epochs": len(metrics) or None,
        "conv_layers": [ly.name for ly in loaded.convs],
    }


@router.get("/api/model", response_model=ModelCard, summary="The model card")
def get_model_card(loaded: RunDep) -> dict:
    """Model, dataset, test accuracy, parameters and conv layers of `?run=` (default run)."""
    return model_card(loaded)


@router.get("/api/runs", response_model=RunList, summary="The runs this server offers")
def list_runs(registry: RegistryDep) -> dict:
    """Every run folder offered, read from its files (no model is built); `default` is the
    run used when a request names none."""
    return {"runs": registry.listing(), "default": registry.default}


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz(registry: RegistryDep) -> dict:
    """ "ok", and the default run's model."""
    return {"status": "ok", "model": registry.get().run.model_name}


def measure_shift(loaded: LoadedRun, max_shift: int, n: int, root) -> dict:
    """The shift test of a loaded run on its dataset's first n test images."""
    from cnnlab.data.datasets import load_dataset
    from cnnlab.robustness import shift_test

    run = loaded.run
    test = load_dataset(run.dataset, "test", root)
    images = test.images[:n]
    images = images[:, None] if images.dim() == 3 else images
    acc = shift_test(loaded.predictor.model, images, test.targets[:n], run.mean, run.std, max_shift)
    return {"run": loaded.name, "n": len(images), "shifts": list(range(max_shift + 1)), "accuracy": acc}


@router.get("/api/shift-test", response_model=ShiftTest, summary="Accuracy on moved test images")
async def shift(
    *,
    max_shift: int = Query(4, description="largest move, 0..14 pixels right and down"),
    n: int = Query(1000, description="first n test images, 1..10000"),
    loaded: RunDep,
    limiter: LimiterDep,
    settings: SettingsDep,
) -> dict:
    """Accuracy on the first `n` test images of the run's dataset, each moved right and down
    by k = 0..max_shift whole pixels (what leaves the picture is lost; no re-centring)."""
    from cnnlab.robustness import check_shift_test

    check_shift_test(max_shift, n)
    key = (loaded.name, id(loaded.run), max_shift, n)
    cache: ShiftCache = settings.shift_cache
    if (hit := cache.get(key)) is None:
        hit = await limiter.run(measure_shift, loaded, max_shift, n, settings.data_root)
        cache.put(key, hit)
    return hit
