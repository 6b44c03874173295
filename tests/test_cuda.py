"""The CUDA path: recorded CUDA-graph steps train like eager steps; the GPU speedrun.

Skipped without a CUDA GPU (CI has none); run on a GPU machine with `pytest tests/test_cuda.py`.
Tiny fake datasets, no network.
"""

import json

import pytest
import torch

from cnnlab import bench, runs
from cnnlab.config import make_config
from cnnlab.train import TrainingInterrupted, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def deterministic_cudnn():
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _fast_config(root, **overrides):
    settings = dict(device="cuda", dataset="mnist", data_root=str(root), epochs=2, threads=None)
    return make_config("fast", **{**settings, **overrides})


@pytest.mark.parametrize("bf16", [False, True])
def test_graph_replay_trains_like_eager_steps(fake_mnist, deterministic_cudnn, bf16):
    """The same seed with and without CUDA graphs: the same weights after 2 epochs, whose last
    batch is short (run eagerly between replays) and whose lr follows onecycle every step."""
    graphed = fit(_fast_config(fake_mnist, cuda_graphs=True, bf16=bf16))
    eager = fit(_fast_config(fake_mnist, cuda_graphs=False, bf16=bf16))
    assert graphed.final["train_loss"] == pytest.approx(eager.final["train_loss"], rel=1e-3)
    # float32: the same kernels, equal to rounding; bfloat16 keeps ~3 digits, and its rounding
    # differences grow over the steps
    rtol, atol = (2e-2, 1e-3) if bf16 else (1e-3, 1e-4)
    for (name, a), b in zip(
        graphed.model.state_dict().items(), eager.model.state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), rtol=rtol, atol=atol), name


def test_graph_run_resumes_and_its_state_loads_on_cpu(fake_mnist, tmp_path, deterministic_cudnn):
    """A graph-trained run stopped after epoch 1 of 2: its resume state holds a float lr (no
    tensors in the JSON) and continues on CUDA and on the CPU."""

    def stop_after_first_epoch(event):
        if event["event"] == "epoch_end":
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        fit(_fast_config(fake_mnist), run, callback=stop_after_first_epoch)
    doc = json.loads((run / runs.RESUME_JSON).read_text())
    assert doc["epoch"] == 1
    groups = doc["state"]["optimizer"]["param_groups"]
    assert all(isinstance(g["lr"], float) and g["capturable"] is False for g in groups)
    on_cuda = fit(_fast_config(fake_mnist), tmp_path / "cuda", resume_from=run)
    on_cpu = fit(_fast_config(fake_mnist, device="cpu"), tmp_path / "cpu", resume_from=run)
    assert len(on_cuda.metrics) == len(on_cpu.metrics) == 2
    assert on_cpu.final["test_acc"] == pytest.approx(on_cuda.final["test_acc"], abs=0.05)


def test_speedrun_on_cuda_reports_warmup_and_baseline_device(fake_mnist):
    result = bench.speedrun(seeds=2, device="cuda", data_root=str(fake_mnist))
    assert result["config"]["cuda_graphs"] is True and result["config"]["bf16"] is True
    assert result["excluded"]["device_warmup_s"] > 0
    assert result["baseline"]["device"] == "cuda"
    assert len(result["seeds"]) == 2 and result["train_s"]["mean"] > 0
    assert "GPU" in bench.markdown_tables([result])
