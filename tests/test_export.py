"""export: ONNX (both exporters), TorchScript and torch.export (.pt2) files that agree with
torch, dynamic batch, written atomically (a failed check leaves nothing behind), carrying what a
runtime needs to preprocess (classes, mean/std, input shape, style)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from cnnlab import __version__
from cnnlab.errors import ConfigError, ExportError
from cnnlab.export import PT2_METADATA, export_run, parity_images
from cnnlab.preprocess import to_model_input
from cnnlab.runs import load_run
from test_predict import run_cli
from tiny_runs import make_run


@pytest.fixture
def cnn_run(fake_dataset, tmp_path):
    return load_run(make_run(tmp_path / "run", "fake", "cnn", {"width": 4}, epochs=1))


def fresh_batch(run, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *run.input_shape), generator=g, dtype=torch.uint8)
    return to_model_input(x, run.mean, run.std)


def eager(run, x):
    with torch.no_grad():
        return run.model(x).numpy()


def test_onnx_legacy_parity_and_dynamic_batch(cnn_run, tmp_path):
    import onnxruntime as ort

    result = export_run(cnn_run, "onnx", tmp_path / "m.onnx", exporter="legacy")
    assert result.path.is_file() and result.max_abs_diff <= 1e-4 and result.argmax_agreement == 1.0
    assert result.image_source == "200 fake test images" and result.batch_sizes == (1, 199)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "input" and isinstance(session.get_inputs()[0].shape[0], str)
    for n in (1, 3, 17):  # batch sizes the export never saw
        x = fresh_batch(cnn_run, n)
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, eager(cnn_run, x), atol=1e-4, rtol=0)
    assert not list(tmp_path.glob("*.part"))
    check_deploy_metadata(session.get_modelmeta().custom_metadata_map, cnn_run)


def check_deploy_metadata(meta: dict[str, str], run) -> None:
    """The metadata an exported file carries matches the run's."""
    assert json.loads(meta["classes"]) == list(run.classes)
    assert json.loads(meta["mean"]) == list(run.mean) and json.loads(meta["std"]) == list(run.std)
    assert json.loads(meta["input_shape"]) == [1, 28, 28]
    assert meta["preprocessing_style"] == "digits" and meta["cnnlab_version"] == __version__
    assert meta["model_name"] == "cnn" and meta["dataset"] == "fake"


def test_pt2_parity_dynamic_batch_and_metadata(cnn_run, tmp_path, capsys):
    from cnnlab.cli import main

    out = tmp_path / "m.pt2"
    assert main(["export", str(cnn_run.path), "--format", "pt2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(pt2, torch.export)" in printed and "same top class 100.00%" in printed
    program = torch.export.load(str(out)).module()  # the file this test just made
    for n in (1, 6):
        x = fresh_batch(cnn_run, n)
        with torch.no_grad():
            np.testing.assert_allclose(program(x).numpy(), eager(cnn_run, x), atol=1e-4, rtol=0)
    extra = {PT2_METADATA: ""}
    torch.export.load(str(out), extra_files=extra)
    check_deploy_metadata(json.loads(extra[PT2_METADATA]), cnn_run)
    assert zipfile.is_zipfile(out) and not list(tmp_path.glob("*.part"))
    assert export_run(cnn_run, "pt2").path == cnn_run.path / "model.pt2"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_parity_and_default_path(cnn_run):
    result = export_run(cnn_run, "torchscript")
    assert result.path == cnn_run.path / "model.torchscript.pt"
    assert result.max_abs_diff <= 1e-4 and result.argmax_agreement == 1.0
    module = torch.jit.load(str(result.path))
    for n in (1, 9):
        x = fresh_batch(cnn_run, n)
        with torch.no_grad():
            np.testing.assert_allclose(module(x).numpy(), eager(cnn_run, x), atol=1e-4, rtol=0)


def test_failed_parity_leaves_no_file(cnn_run, tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="disagrees"):
        export_run(cnn_run, "onnx", out, exporter="legacy", tolerance=-1.0)  # nothing can pass
    assert not out.exists() and not list(tmp_path.glob("m.onnx*"))


def test_bad_options(cnn_run):
    with pytest.raises(ConfigError, match="format"):
        export_run(cnn_run, "tflite")
    with pytest.raises(ConfigError, match="exporter"):
        export_run(cnn_run, "onnx", exporter="magic")


def test_parity_images_fall_back_to_noise_when_the_dataset_is_gone(cnn_run):
    cnn_run.dataset = "no-such-dataset"
    x, source = parity_images(cnn_run, 8)
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.uint8 and "random" in source


def test_cli_export_prints_the_parity(cnn_run, tmp_path):
    code, out, err = run_cli(
        "export", str(cnn_run.path), "--format", "torchscript", "--out", str(tmp_path / "m.pt")
    )
    assert code == 0, err
    assert "wrote" in out and "max |logit diff|" in out and "same top class 100.00%" in out
    code, _, err = run_cli("export", str(tmp_path / "nope"))
    assert code == 2 and "nope" in err


@pytest.mark.slow
def test_onnx_dynamo_parity(cnn_run, tmp_path):
    """The default exporter (torch.export), slower to run: ~15 s here."""
    import onnxruntime as ort

    code, out, err = run_cli("export", str(cnn_run.path), "--out", str(tmp_path / "m.onnx"))
    assert code == 0, err
    assert "(onnx, dynamo)" in out and "same top class 100.00%" in out
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    check_deploy_metadata(session.get_modelmeta().custom_metadata_map, cnn_run)
    for n in (1, 5):
        x = fresh_batch(cnn_run, n)
        np.testing.assert_allclose(
            session.run(None, {"input": x.numpy()})[0], eager(cnn_run, x), atol=1e-4
        )
