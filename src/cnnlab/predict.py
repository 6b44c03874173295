"""Predict with a trained run on a user's images: top-k classes and how sure the model is.

`Predictor(run)` holds only what a prediction reads (the model in eval mode, the classes, the
preprocessing settings) and never changes after it is built, so one predictor can serve many
threads (the web app) at once. Bad files never stop a stream: `predict_files` yields a
`Failure` naming the file and goes on with the next.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data.datasets import IMAGE_SUFFIXES, IMAGEFOLDER_PREFIX, walk_files
from cnnlab.errors import ConfigError, ImageInputError
from cnnlab.preprocess import ImageSource, Preprocessed, preprocess_image, to_model_input


@dataclass(frozen=True)
class Prediction:
    """One image's result.

    Attributes:
        name: the file (or label) predicted.
        top: (class name, probability) pairs, most likely first.
        input: the uint8 (C, H, W) tensor the model saw.
        preprocessed: the preprocessing record (steps kept when asked for).
    """

    name: str
    top: list[tuple[str, float]]
    input: torch.Tensor = field(repr=False)
    preprocessed: Preprocessed | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def probability(self) -> float:
        return self.top[0][1]


@dataclass(frozen=True)
class Failure:
    """A file that could not be predicted, and why (one line)."""

    name: str
    error: str


class Predictor:
    """Turns images into predictions with a loaded run (`cnnlab.runs.load_run`).

    Args:
        run: a loaded run: `.model`, `.classes`, `.input_shape`, `.mean`, `.std`, `.style`,
            `.dataset`.
        device: where the model runs (default: CPU, where `load_run` puts it).
    """

    def __init__(self, run, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = run.model.to(self.device).eval()
        self.classes = tuple(run.classes)
        self.input_shape = tuple(int(s) for s in run.input_shape)
        self.mean, self.std = tuple(run.mean), tuple(run.std)
        self.style = run.style
        # Image folders were trained on plain fit-and-pad; registered "fit" datasets
        # (Fashion-MNIST) are light objects on black, so photos on white get inverted.
        self.dark_background = not str(run.dataset).startswith(IMAGEFOLDER_PREFIX)

    def safe_batch_size(self, wanted: int) -> int:
        """`wanted`, or fewer images when this model's activations would outgrow the budget."""
        from cnnlab.models import safe_batch_size

        return safe_batch_size(self.model, self.input_shape, wanted)

    def preprocess(
        self, source: ImageSource, name: str | None = None, keep_steps: bool = False
    ) -> Preprocessed:
        """The model input for one image (raises `ImageInputError` for a bad one)."""
        return preprocess_image(
            source,
            self.style,
            self.input_shape,
            dark_background=self.dark_background,
            keep_steps=keep_steps,
            name=name,
        )

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) model inputs -> float (B, classes) softmax probabilities."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ConfigError(f"inputs are {tuple(x.shape[1:])}, the model takes {self.input_shape}")
        with torch.inference_mode():
            logits = self.model(to_model_input(x, self.mean, self.std).to(self.device))
            return torch.softmax(logits.float(), dim=1).cpu()

    def top_k(self, probs: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
        """Per row of probabilities, the k most likely (class, probability) pairs."""
        k = max(1, min(k, len(self.classes)))
        values, indices = probs.topk(k, dim=1)
        return [
            [(self.classes[i], float(p)) for p, i in zip(vs.tolist(), ix.tolist(), strict=True)]
            for vs, ix in zip(values, indices, strict=True)
        ]

    def predict(
        self,
        sources: Sequence[ImageSource],
        top: int = 3,
        names: Sequence[str] | None = None,
        keep_steps: bool = False,
    ) -> list[Prediction]:
        """Predict a batch of images (paths, bytes, PIL images or arrays).

        Raises:
            ImageInputError: for the first input that is not a usable image.
        """
        pre = [
            self.preprocess(s, names[i] if names else None, keep_steps) for i, s in enumerate(sources)
        ]
        return self._predict_preprocessed(pre, top)

    def _predict_preprocessed(self, pre: list[Preprocessed], top: int) -> list[Prediction]:
        if not pre:
            return []
        probs = self.probabilities(torch.stack([p.tensor for p in pre]))
        return [
            Prediction(p.name, t, p.tensor, p) for p, t in zip(pre, self.top_k(probs, top), strict=True)
        ]

    def predict_files(
        self,
        paths: Iterable[str | os.PathLike],
        top: int = 3,
        batch_size: int = 64,
        keep_steps: bool = False,
        on_result: Callable[[Prediction | Failure], None] | None = None,
    ) -> Iterator[Prediction | Failure]:
        """Stream predictions over many files in input order, `batch_size` at a time.

        A file that cannot be used yields a `Failure` (its name and the reason) and the
        stream goes on. `on_result` is called with each result too (for a progress bar).
        """
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, not {batch_size}")
        batch_size = self.safe_batch_size(batch_size)
        pending: list[Preprocessed | Failure] = []

        def flush() -> Iterator[Prediction | Failure]:
            done = iter(
                self._predict_preprocessed([p for p in pending if isinstance(p, Preprocessed)], top)
            )
            for item in pending:
                result = item if isinstance(item, Failure) else next(done)
                if on_result:
                    on_result(result)
                yield result
            pending.clear()

        for path in paths:
            try:
                pending.append(self.preprocess(path, keep_steps=keep_steps))
            except ImageInputError as e:
                pending.append(Failure(os.fspath(path), str(e)))
            if sum(isinstance(p, Preprocessed) for p in pending) >= batch_size:
                yield from flush()
        yield from flush()


def load(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Predictor:
    """A run folder -> a Predictor: `cnnlab.load("runs/demo/cnn").predict(["digit.png"])`.

    Raises:
        CheckpointError: the folder or its weights are missing, damaged or tampered with.
    """
    from cnnlab.runs import load_run

    return Predictor(load_run(run_dir), device=device)


def collect_files(inputs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Expand files and directories into the files to predict.

    A file named on the command line is always tried (its content decides whether it is an
    image). Directories are walked recursively in sorted order, taking files whose suffix is
    an image's (.png, .jpg, .jpeg, .bmp, .gif, .webp) and skipping hidden ones.

    Returns:
        (files to predict, files skipped in directories for their suffix).
    """
    files: list[Path] = []
    skipped: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for sub in walk_files(path):  # any depth: the walk keeps its own stack
                (files if sub.suffix.lower() in IMAGE_SUFFIXES else skipped).append(sub)
        else:  # a missing or unreadable file becomes a Failure line when predicted
            files.append(path)
    return files, skipped
