"""Export a run's model to ONNX, TorchScript or a torch.export program (.pt2), and prove the
export computes what torch does.

The file is written through `cnnlab.io.atomic_write`: it replaces `<out>` only after the exported
model, run by onnxruntime (ONNX), torch.jit (TorchScript) or torch.export (.pt2), agreed with the
eager model on a batch of the dataset's test images: every logit within `tolerance` (1e-4) and
every argmax the same, at two batch sizes (the batch dimension is dynamic). A failed check
leaves no file behind.

A deployed file describes itself: ONNX files carry `metadata_props` and .pt2 files an extra file
`cnnlab.json` with the classes, mean/std, input shape, preprocessing style and cnnlab version
(`deploy_metadata`). `torch.export.load` (like `torch.jit.load`) may unpickle, so the only such
file cnnlab ever loads is the one it has just written itself, for the parity check.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab import io
from cnnlab.errors import ConfigError, DatasetFormatError, DatasetNotFoundError, ExportError

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2"}
PT2_METADATA = "cnnlab.json"  # the extra file of a .pt2 archive holding `deploy_metadata`
EXPORTERS = ("dynamo", "legacy")
TOLERANCE = 1e-4  # max |logit difference| allowed (float32 kernels differ by ~1e-6 here)


@dataclass(frozen=True)
class ExportResult:
    """What was written and how well it agrees with torch.

    Attributes:
        path: the exported file.
        format: "onnx", "torchscript" or "pt2".
        exporter: for ONNX, "dynamo" (torch.export) or "legacy" (TorchScript-based).
        max_abs_diff: the largest |logit difference| from the eager model over the check.
        argmax_agreement: fraction of images with the same top class (1.0 when it passed).
        images: how many images were checked; `image_source` says which.
        batch_sizes: the batch sizes run (more than one: the batch is dynamic).
    """

    path: Path
    format: str
    exporter: str
    max_abs_diff: float
    argmax_agreement: float
    images: int
    image_source: str
    batch_sizes: tuple[int, ...]


def parity_images(run, n: int = 256) -> tuple[torch.Tensor, str]:
    """Up to n uint8 (N, C, H, W) images of the run's test split, or seeded noise when that
    dataset is not available here; with a description of which."""
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.factory import raw_images

    try:
        x = raw_images(load_dataset(run.dataset, "test"), n)
        if tuple(x.shape[1:]) == tuple(run.input_shape):
            return x, f"{len(x)} {run.dataset} test images"
    except (ConfigError, DatasetNotFoundError, DatasetFormatError, OSError):
        pass
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *run.input_shape), generator=g, dtype=torch.uint8)
    return x, f"{n} random images ({run.dataset} test split not available here)"


def deploy_metadata(run) -> dict[str, str]:
    """What a runtime needs besides the graph: classes, normalisation, input, style (JSON strings)."""
    from cnnlab import __version__

    return {
        "classes": json.dumps(list(run.classes)),
        "mean": json.dumps(list(run.mean)),
        "std": json.dumps(list(run.std)),
        "input_shape": json.dumps(list(run.input_shape)),
        "input_range": "pixels / 255, then (x - mean) / std, per channel",
        "preprocessing_style": run.style,
        "model_name": run.model_name,
        "dataset": run.dataset,
        "cnnlab_version": __version__,
    }


def default_path(run, fmt: str) -> Path:
    """`RUN/model.onnx`, `RUN/model.torchscript.pt` or `RUN/model.pt2`."""
    return Path(run.path) / f"model{FORMATS[fmt]}"


def export_run(
    run,
    fmt: str,
    out: str | os.PathLike | None = None,
    exporter: str = "dynamo",
    check_images: int = 256,
    tolerance: float = TOLERANCE,
) -> ExportResult:
    """Export a loaded run's model and check it against the eager model.

    Args:
        run: a `cnnlab.runs.Run` (model in eval mode on the CPU).
        fmt: "onnx", "torchscript" or "pt2".
        out: the file to write (default: inside the run folder, see `default_path`).
        exporter: for ONNX: "dynamo" (torch.export, the default since torch 2.9) or "legacy".
        check_images: how many test images the parity check runs.
        tolerance: the largest |logit difference| accepted.

    Raises:
        ConfigError: unknown format or exporter.
        ExportError: the exporter failed, or the exported model disagrees with torch.
    """
    from cnnlab.preprocess import to_model_input

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown ONNX exporter {exporter!r}; choose one of: {', '.join(EXPORTERS)}")
    out = Path(out) if out else default_path(run, fmt)
    model = run.model.cpu().eval()
    images, source = parity_images(run, check_images)
    x = to_model_input(images, run.mean, run.std)  # (N, C, H, W) float
    checked = {}

    def export_and_check(part: Path) -> None:
        """Export into the staging file; raise (so nothing replaces `out`) unless it agrees."""
        run_exported = _export(model, x[: min(2, len(x))], part, fmt, exporter, deploy_metadata(run))
        with torch.inference_mode():
            expected = model(x).float().numpy()
        got = (
            np.concatenate([run_exported(x[:1]), run_exported(x[1:])]) if len(x) > 1 else run_exported(x)
        )
        checked["diff"] = diff = float(np.abs(got - expected).max())
        checked["agree"] = agree = float((got.argmax(1) == expected.argmax(1)).mean())
        if not diff <= tolerance or agree < 1.0:
            raise ExportError(
                f"{out}: the exported model disagrees with torch on {source}: max |logit diff| "
                f"{diff:.3g} (allowed {tolerance:g}), same top class for {agree:.2%}; not written"
                + ("; try --exporter legacy" if fmt == "onnx" and exporter == "dynamo" else "")
            )

    io.atomic_write(out, export_and_check)
    sizes = (1, len(x) - 1) if len(x) > 1 else (1,)
    diff, agree = checked["diff"], checked["agree"]
    name = {"onnx": exporter, "torchscript": "torch.jit.trace", "pt2": "torch.export"}[fmt]
    return ExportResult(out, fmt, name, diff, agree, len(x), source, sizes)


def _export(model, example, part: Path, fmt: str, exporter: str, meta: dict[str, str]):
    """Write the exported model to `part`; a function running it on a float batch."""
    if fmt == "onnx":
        _export_onnx(model, example, part, exporter)
        _set_onnx_metadata(part, meta)
        return _onnx_runner(part)
    if fmt == "pt2":
        _export_pt2(model, example, part, meta)
        return _pt2_runner(part)
    _export_torchscript(model, example, part)
    return _torchscript_runner(part)


def _set_onnx_metadata(path: Path, meta: dict[str, str]) -> None:
    """Store `meta` as the ONNX model's metadata_props (read back by any ONNX runtime)."""
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, meta)
    onnx.save(proto, str(path))


def _batch_dim():
    return torch.export.Dim("batch", min=1, max=1 << 16)


def _export_pt2(model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict) -> None:
    """A torch.export program with a dynamic batch, saved with `meta` as its cnnlab.json."""
    try:
        with torch.inference_mode(False), torch.no_grad():
            program = torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},))
    except Exception as e:  # torch.export raises many types; all mean "could not export"
        raise ExportError(f"torch.export failed: {type(e).__name__}: {e}"[:600]) from None
    with open(path, "wb") as f:  # a file object: the staging name does not end in .pt2
        torch.export.save(program, f, extra_files={PT2_METADATA: json.dumps(meta)})


def _pt2_runner(path: Path):
    """A function float tensor -> numpy logits, run by the .pt2 program just written."""
    with open(path, "rb") as f:
        module = torch.export.load(f).module()  # our own file, never a user's: it may unpickle

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return module(x).float().numpy()

    return run


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, exporter: str) -> None:
    """ONNX with input "input" (batch, C, H, W) and output "logits" (batch, classes)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notice
            if exporter == "dynamo":
                batch = _batch_dim()
                torch.onnx.export(
                    model,
                    (example,),
                    str(path),
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_shapes=({0: batch},),
                )
            else:
                torch.onnx.export(
                    model,
                    (example,),
                    str(path),
                    dynamo=False,
                    verbose=False,
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                )
    except ImportError as e:
        raise ExportError(
            f"ONNX export needs the [export] extra ({e}); pip install 'cnnlab[export]'"
        ) from None
    except Exception as e:  # the exporters raise many types; all mean "could not export"
        hint = "; try --exporter legacy" if exporter == "dynamo" else ""
        raise ExportError(
            f"ONNX export ({exporter}) failed: {type(e).__name__}: {e}"[:600] + hint
        ) from None


def _onnx_runner(path: Path):
    """A function float tensor (B, C, H, W) -> numpy logits, run by onnxruntime on the CPU."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("the ONNX check needs onnxruntime; pip install 'cnnlab[export]'") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def _export_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """A traced TorchScript module (torch.jit is deprecated upstream but still the way to run a
    model from C++ through libtorch without Python)."""
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        try:
            traced = torch.jit.trace(model, example)
        except Exception as e:  # tracing errors come in many types
            raise ExportError(f"TorchScript trace failed: {type(e).__name__}: {e}"[:600]) from None
        traced.save(str(path))


def _torchscript_runner(path: Path):
    """A function float tensor -> numpy logits, run by the TorchScript file just written."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu").eval()  # our own file, not a user's

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return module(x).float().numpy()

    return run
