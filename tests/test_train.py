"""Training on the tiny learnable 'fake' dataset: learning, exact resume, collapse, Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab import checkpoint, runs
from cnnlab.checkpoint import resume_config
from cnnlab.collapse import check_collapse, dead_relu_fraction
from cnnlab.config import RECIPES, TrainConfig, make_config
from cnnlab.errors import ConfigError, TrainingDivergedError
from cnnlab.models import get_model
from cnnlab.train import TrainingInterrupted, fit

REPO = Path(__file__).resolve().parents[1]


def quick(**kw) -> TrainConfig:
    """A config for the fake dataset on the CPU, one thread (tests share the machine)."""
    settings = dict(dataset="fake", device="cpu", threads=1, batch_size=32, epochs=2)
    settings.update(kw)
    return make_config(**settings)


def test_300_steps_drive_the_loss_down(fake_dataset):
    losses = []

    def record(e):
        if e["event"] == "step":
            losses.append(e["loss"])

    # 600 images / batch 20 = 30 steps per epoch, 10 epochs = 300 steps
    config = quick(model="mlp", batch_size=20, epochs=10, lr=0.001, schedule="constant")
    result = fit(config, callback=record)
    assert len(losses) == 10 * 2  # reported every 20 steps and at each epoch end
    assert losses[0] > 1.0  # the mean of the first 20 steps, from about ln 10 = 2.30
    assert result.final["train_loss"] < 0.1 * losses[0]
    assert result.final["test_acc"] > 0.9  # the bars are easy: a working loop must find them
    assert not result.model.training


def test_run_folder_files_and_reload(fake_dataset, tmp_path):
    out = tmp_path / "run"
    result = fit(quick(model="mlp", epochs=2), out)
    for name in (
        "model.safetensors",
        "metrics.json",
        "config.json",
        "curves.png",
        "resume.safetensors",
        "resume.json",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.part"))
    run = runs.load_run(out)
    assert run.model_name == "mlp" and run.dataset == "fake" and run.mean == (0.2,)
    assert [m["epoch"] for m in run.metrics] == [1, 2]
    assert set(run.metrics[0]) >= {
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "seconds",
        "images_per_s",
    }
    assert run.config["model"] == "mlp" and run.config["epochs"] == 2
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(run.model(x), result.model.cpu()(x))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_epochs_then_resume_to_four_equals_four(fake_dataset, tmp_path):
    # cnn has BatchNorm (running stats) and dropout (global RNG): both must be restored
    kw = dict(model="cnn", schedule="constant", lr=0.003, train_subset=256, test_subset=64, augment=True)
    straight = fit(quick(epochs=4, **kw))
    fit(quick(epochs=2, **kw), tmp_path / "run")
    resumed = fit(resume_config(tmp_path / "run", epochs=4), resume_from=tmp_path / "run")
    _assert_same(_state(straight.model), _state(resumed.model))
    assert [m["test_loss"] for m in resumed.metrics] == [m["test_loss"] for m in straight.metrics]
    assert len(runs.load_run(tmp_path / "run").metrics) == 4


def test_interrupted_onecycle_run_resumes_exactly(fake_dataset, tmp_path):
    kw = dict(model="cnn", schedule="onecycle", train_subset=256, test_subset=64, epochs=3)
    straight = fit(quick(**kw))

    def interrupt(e):
        if e["event"] == "step" and e["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        fit(quick(**kw), tmp_path / "run", callback=interrupt)
    assert info.value.epochs_done == 1
    resumed = fit(resume_config(tmp_path / "run"), resume_from=tmp_path / "run")
    _assert_same(_state(straight.model), _state(resumed.model))


def test_resume_refuses_changed_settings(fake_dataset, tmp_path):
    fit(quick(model="mlp", epochs=1, train_subset=64), tmp_path / "run")
    with pytest.raises(ConfigError, match="trained with lr=.*resume with the same setting"):
        fit(resume_config(tmp_path / "run", lr=0.1), resume_from=tmp_path / "run")
    with pytest.raises(ConfigError, match="cannot be stretched"):
        fit(resume_config(tmp_path / "run", epochs=3), resume_from=tmp_path / "run")


def test_collapse_detector_fires_on_a_forced_collapse(fake_dataset):
    # Adam at lr 5 kills every ReLU of the lesson's one-channel CNN within a few steps
    config = quick(
        model="lesson-cnn", model_kwargs={"channels": [6, 1]}, lr=5.0, schedule="constant", epochs=3
    )
    with pytest.raises(TrainingDivergedError) as info:
        fit(config)
    message = str(info.value)
    assert "chance" in message or "loss became" in message
    assert "--lr 0.5" in message or "divide --lr by 10" in message


def test_check_collapse_names_dead_relus_and_the_fix():
    model = get_model("lesson-cnn", channels=(6, 1))
    with torch.no_grad():
        model.features.conv2.bias.fill_(-1e3)  # relu2 outputs 0 for every input: a dead layer
    x = torch.rand(16, 1, 28, 28)
    assert dead_relu_fraction(model, x)["features.relu2"] == 1.0
    config = TrainConfig(model="lesson-cnn", model_kwargs={"channels": [6, 1]}, lr=0.01)
    row = {"test_acc": 0.1135, "train_loss": 2.302}
    with pytest.raises(TrainingDivergedError) as info:
        check_collapse(config, row, 10, model, x)
    message = str(info.value)
    assert "100% of the units of layer features.relu2 output 0" in message
    assert "--lr 0.001" in message and "default lesson-cnn channels" in message
    check_collapse(config, {"test_acc": 0.9, "train_loss": 0.3}, 10, model, x)  # no collapse


def test_nan_loss_stops_training(fake_dataset):
    with pytest.raises(TrainingDivergedError, match="loss became nan.*divide --lr by 10"):
        fit(quick(model="mlp", optimizer="sgd", lr=10.0, schedule="constant"))


def test_config_validation_and_recipes():
    with pytest.raises(ConfigError, match="unknown optimizer 'rmsprop'; choose adam"):
        make_config(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        make_config(epochs=0)
    with pytest.raises(ConfigError, match="unknown recipe"):
        make_config("nope")
    with pytest.raises(ConfigError, match="unknown config keys: colour"):
        TrainConfig.from_dict({"colour": 1})
    lesson = make_config("lesson-mlp", seed=3)
    assert (lesson.model, lesson.lr, lesson.batch_size, lesson.epochs) == ("mlp", 0.01, 64, 2)
    assert lesson.seed == 3 and set(RECIPES) >= {"lesson-mlp", "lesson-cnn"}


def test_bf16_request_is_honoured_or_reported(fake_dataset):
    events = []
    result = fit(quick(model="mlp", epochs=1, bf16=True, train_subset=64), callback=events.append)
    start = next(e for e in events if e["event"] == "start")
    warned = any(e["event"] == "warning" and "bf16" in e["message"] for e in events)
    assert start["bf16"] or warned
    assert math.isfinite(result.final["train_loss"])


def test_the_start_event_gives_label_smoothings_floor(fake_dataset):
    """The Train page draws it under the live training loss; None without smoothing."""
    floors = []
    for smoothing in (0.0, 0.1):
        events = []
        fit(
            quick(model="mlp", epochs=1, label_smoothing=smoothing, train_subset=64),
            callback=events.append,
        )
        floors.append(next(e for e in events if e["event"] == "start")["train_loss_floor"])
    assert floors[0] is None and floors[1] == pytest.approx(0.5003, abs=1e-4)


SIGINT_SCRIPT = """
import sys
from pathlib import Path
from cnnlab.data import datasets
from tests.conftest import write_fake_dataset
datasets.DATASETS["fake"] = write_fake_dataset(Path(sys.argv[1]))
from cnnlab.cli import main
sys.exit(main(["train", "--dataset", "fake", "--model", "mlp", "--epochs", "500",
               "--batch-size", "16", "--schedule", "constant", "--device", "cpu",
               "--threads", "1", "--out", sys.argv[2]]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a subprocess is POSIX")
def test_ctrl_c_leaves_a_resumable_run(fake_dataset, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_SCRIPT, str(tmp_path / "data"), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.time() + 120
        for line in proc.stdout:  # wait until an epoch has finished, then press Ctrl-C
            if line.startswith("epoch 2/500"):
                break
            assert time.time() < deadline, "training never reached epoch 2"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert f"resume with: cnnlab train --resume {out}" in stderr
    assert "Traceback" not in stderr
    assert not list(out.glob("*.part"))
    state = checkpoint.load_resume_state(out)
    done = state["epoch"]
    assert done >= 2 and len(state["metrics"]) == done
    resumed = fit(resume_config(out, epochs=done + 1), resume_from=out)
    assert [m["epoch"] for m in resumed.metrics] == list(range(1, done + 2))


def test_image_folder_trains_through_the_dataloader_and_evaluates(tmp_path):
    from PIL import Image
    from tests.conftest import learnable_images

    from cnnlab.data.datasets import load_dataset
    from cnnlab.evaluation import evaluate_run

    x, y = learnable_images(60, num_classes=3, seed=5)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = tmp_path / "shapes" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    config = make_config(
        model="lesson-cnn",
        dataset=f"imagefolder:{tmp_path / 'shapes'}",
        device="cpu",
        threads=1,
        epochs=2,
        batch_size=8,
        augment=True,
    )
    result = fit(config, tmp_path / "run")
    assert result.info.classes == ("class0", "class1", "class2")
    again = fit(config)  # the DataLoader path is seeded too: same data order, same weights
    _assert_same(_state(result.model), _state(again.model))
    report = evaluate_run(tmp_path / "run", device="cpu")
    test_set = load_dataset(f"imagefolder:{tmp_path / 'shapes'}", "test")
    assert report["images"] == len(test_set) and 9 <= len(test_set) <= 15  # 20 % of each class
    assert len(report["per_class"]) == 3
    assert (tmp_path / "run" / "errors.png").is_file()


def test_validation_split_is_disjoint_stratified_and_reproducible():
    from cnnlab.data.split import stratified_split, validation_size

    targets = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    train, val = stratified_split(targets, validation_size(0.1, len(targets)), seed=3)
    assert len(val) == 100 and len(train) == 900
    assert not set(train.tolist()) & set(val.tolist())  # disjoint
    assert torch.bincount(targets[val]).tolist() == [50, 30, 20]  # in proportion to each class
    again, val_again = stratified_split(targets, 100, seed=3)
    assert torch.equal(val, val_again) and torch.equal(train, again)
    assert not torch.equal(stratified_split(targets, 100, seed=4)[1], val)
    with pytest.raises(ConfigError, match="holds out 1000 of 1000"):
        validation_size(1000, 1000)


def test_validation_split_reports_val_each_epoch_and_test_once(fake_dataset, tmp_path):
    result = fit(quick(model="mlp", epochs=3, val_split=60), tmp_path / "run")
    rows = result.metrics
    assert all("val_acc" in r and "val_loss" in r for r in rows)
    assert [("test_acc" in r) for r in rows] == [False, False, True]  # the test set, once
    saved = json.loads((tmp_path / "run" / runs.METRICS).read_text())
    assert saved[-1]["test_acc"] == rows[-1]["test_acc"]
    assert json.loads((tmp_path / "run" / runs.CONFIG).read_text())["val_split"] == 60


def _cli_config(argv: list[str]) -> TrainConfig:
    """The config `cnnlab train ARGV` would train (parsed, not run)."""
    from cnnlab.cli import build_parser
    from cnnlab.cli.config_flags import config_overrides
    from cnnlab.cli.train import _config_and_out

    args = build_parser().parse_args(["train", *argv])
    return _config_and_out(args, config_overrides(args))[0]


def test_train_config_file_reproduces_a_run_and_flags_override(fake_dataset, tmp_path, capsys):
    from cnnlab.cli import main

    first = tmp_path / "first"
    original = quick(model="mlp", epochs=1, model_kwargs={"hidden": [32]}, adam_betas=(0.8, 0.99))
    original = dataclasses.replace(original, bf16=None)  # the file's null is kept, not defaulted
    fit(original, first)
    saved = first / runs.CONFIG
    assert _cli_config(["--config", str(saved)]) == original
    changed = _cli_config(["--config", str(saved), "--lr", "0.003", "--no-normalize"])
    assert (changed.lr, changed.normalize, changed.model_kwargs) == (0.003, False, {"hidden": [32]})
    # the real command: the second run's config.json is the first's
    again = tmp_path / "again"
    assert main(["train", "--config", str(saved), "--out", str(again), "-q"]) == 0
    assert json.loads((again / runs.CONFIG).read_text()) == json.loads(saved.read_text())
    capsys.readouterr()


def test_train_config_file_in_toml(tmp_path):
    toml = tmp_path / "mlp.toml"
    toml.write_text(
        'model = "mlp"\nepochs = 2\nadam_betas = [0.7, 0.9]\n\n[model_kwargs]\nhidden = [64]\n'
    )
    config = _cli_config(["--config", str(toml), "--epochs", "5"])
    assert config == make_config(
        model="mlp", epochs=5, adam_betas=(0.7, 0.9), model_kwargs={"hidden": [64]}
    )
    # the recipe sits under the file: fast's settings, the file's model
    assert _cli_config(["--recipe", "fast", "--config", str(toml)]).tta == RECIPES["fast"]["tta"]


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("bad.toml", 'modle = "mlp"\n', "unknown config keys: modle"),
        ("bad.toml", "epochs = -1\n", "epochs"),
        ("bad.toml", 'epochs = "three"\n', "epochs must be a whole number"),
        ("bad.toml", "epochs = \n", "not valid TOML"),
        ("bad.json", "[1, 2]", "a config must be a JSON object"),
        ("bad.json", "{", "not valid JSON"),
        ("missing.json", None, "cannot read it"),
    ],
)
def test_train_config_file_errors_are_one_line_naming_the_file(tmp_path, capsys, name, text, message):
    from cnnlab.cli import main

    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"cnnlab: error: {path}: ") and message in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "capability", "onednn", "expected"),
    [
        ({"avx512_bf16"}, "AVX512", "", True),
        ({"amx_bf16"}, "AVX512", "ALL", True),
        ({"avx2"}, "AVX2", "", False),  # a Zen 3: no bf16 instructions
        ({"avx512_bf16"}, "AVX2", "", False),  # ATEN_CPU_CAPABILITY=avx2 on a bf16 CPU
        ({"avx512_bf16"}, "AVX512", "avx2", False),  # ONEDNN_MAX_CPU_ISA=AVX2: emulated
        ({"avx512_bf16"}, "AVX512", "AVX512_CORE_BF16", True),
    ],
)
def test_bf16_only_where_the_kernels_may_use_it(monkeypatch, flags, capability, onednn, expected):
    """A CPU with AVX512-BF16 held to AVX2 kernels emulates bf16, many times slower than
    float32 (BENCHMARKS.md): bf16 needs the flag and kernels allowed to use it."""
    from cnnlab import devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", onednn)
    assert devices.bf16_supported(torch.device("cpu")) is expected


@pytest.mark.parametrize(
    ("setting", "flags", "onednn", "expected"),
    [
        (None, {"avx512_bf16", "amx_bf16"}, "", True),  # the fast recipe on a Sapphire Rapids
        (None, {"avx512_bf16"}, "", False),  # a Zen 5: bf16 but no AMX tiles
        (None, {"avx512_bf16", "amx_bf16"}, "AVX512_CORE_BF16", False),  # oneDNN held below AMX
        (None, {"avx512_bf16", "amx_bf16"}, "AVX512_CORE_AMX", True),
        (True, {"avx512_bf16"}, "", True),
        (False, {"avx512_bf16", "amx_bf16"}, "", False),
        (True, {"avx2"}, "", False),
    ],
)
def test_unset_bf16_means_only_where_amx_makes_it_pay(monkeypatch, setting, flags, onednn, expected):
    from cnnlab import devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", onednn)
    assert devices.use_bf16(setting, torch.device("cpu")) is expected
