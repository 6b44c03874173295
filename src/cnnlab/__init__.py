"""cnnlab: learn and do image classification with MLPs and CNNs, starting from MNIST.

The main API, loaded lazily (PEP 562) so that `import cnnlab` and `cnnlab --help` stay free of
torch until a name that needs it is used::

    import cnnlab

    result = cnnlab.fit(cnnlab.make_config("fast"), "runs/fast")  # train into a run folder
    predictor = cnnlab.load("runs/fast")                          # a run folder -> a predictor
    print(predictor.predict(["digit.png"])[0].label)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "TrainConfig": "cnnlab.config",
    "make_config": "cnnlab.config",
    "RECIPES": "cnnlab.config",
    "fit": "cnnlab.train",
    "FitResult": "cnnlab.train",
    "evaluate": "cnnlab.evaluation",
    "get_model": "cnnlab.models",
    "list_models": "cnnlab.models",
    "register_model": "cnnlab.models",
    "load_dataset": "cnnlab.data.datasets",
    "load_run": "cnnlab.runs",
    "load": "cnnlab.predict",
    "Predictor": "cnnlab.predict",
}

__all__ = [
    "__version__",
    "TrainConfig",
    "make_config",
    "RECIPES",
    "fit",
    "FitResult",
    "evaluate",
    "get_model",
    "list_models",
    "register_model",
    "load_dataset",
    "load_run",
    "load",
    "Predictor",
]

if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from cnnlab.config import RECIPES, TrainConfig, make_config
    from cnnlab.data.datasets import load_dataset
    from cnnlab.evaluation import evaluate
    from cnnlab.models import get_model, list_models, register_model
    from cnnlab.predict import Predictor, load
    from cnnlab.runs import load_run
    from cnnlab.train import FitResult, fit


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
