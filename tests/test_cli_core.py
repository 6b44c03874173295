"""The models / train / eval / compare commands, run in-process on the fake dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from cnnlab.cli import main
from cnnlab.models import list_models

FAST = ["--dataset", "fake", "--device", "cpu", "--threads", "1", "--batch-size", "32"]


def test_models_lists_every_model_with_size(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert "242,762" in out  # mlp: 784*256+256 + 256*128+128 + 128*64+64 + 64*10+10
    assert main(["models", "--input-shape", "3,32,32", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["input_shape"] == [3, 32, 32] and len(doc["models"]) == len(list_models())
    assert main(["models", "--input-shape", "28"]) == 2
    assert "--input-shape must be C,H,W" in capsys.readouterr().err


def test_train_then_eval(fake_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "lesson-cnn", "--epochs", "2", *FAST, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and f"run folder: {run}" in out
    assert main(["train", "--model", "mlp", *FAST, "--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err

    assert main(["eval", str(run), "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "precision" in out
    for name in ("eval.json", "confusion.png", "errors.png"):
        assert (tmp_path / "ev" / name).is_file()
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["images"] == 200 and len(report["per_class"]) == 10
    assert sum(map(sum, report["confusion"])) == 200
    assert report["accuracy"] == pytest.approx(1 - report["errors"] / 200)


def test_eval_of_a_damaged_run_is_one_clear_line(fake_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--epochs", "1", *FAST, "--out", str(run), "-q"]) == 0
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnlab: error:") and "SHA-256" in err[0]
    weights.write_bytes(bytes(data[: len(data) // 3]))
    assert main(["eval", str(run)]) == 2
    assert "truncated or corrupted" in capsys.readouterr().err


def test_resume_flag(fake_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    common = [*FAST, "--schedule", "constant", "--train-subset", "64", "-q"]
    assert main(["train", "--model", "mlp", "--epochs", "1", *common, "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "-q"]) == 0
    assert len(json.loads((run / "metrics.json").read_text())) == 2
    assert main(["train", "--resume", str(run), "--recipe", "lesson-mlp"]) == 2


def test_compare_writes_report_and_runs(fake_dataset, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = [
        "compare",
        "mlp",
        "lesson-cnn",
        *FAST,
        "--epochs",
        "mlp=1,lesson-cnn=2",
        "--out",
        str(out),
        "-q",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "MACs/image" in printed and "test acc %" in printed and "report:" in printed
    report = (out / "report.md").read_text()
    assert "| mlp |" in report and "| lesson-cnn |" in report
    assert "![curves](curves.png)" in report and "test errors" in report.split("## Result")[1]
    for name in (
        "curves.png",
        "confusion.png",
        "mlp/model.safetensors",
        "lesson-cnn/errors.png",
        "lesson-cnn/eval.json",
    ):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "mlp" / "metrics.json").read_text())) == 1
    assert len(json.loads((out / "lesson-cnn" / "metrics.json").read_text())) == 2
    assert main(["compare", "mlp", "cnn", *FAST, "--epochs", "vgg=2", "--out", str(out)]) == 2
    assert "'vgg' is not among" in capsys.readouterr().err


def test_train_flags_are_generated_from_trainconfig():
    """One schema: every TrainConfig field is a `cnnlab train` flag whose help names its default,
    and the parsed flags rebuild the config they describe."""
    import argparse
    from dataclasses import fields

    from cnnlab.cli.config_flags import add_config_options, config_overrides, flag_name
    from cnnlab.config import OPTIMIZER_NAMES, SCHEDULE_NAMES, TrainConfig, default_value, make_config
    from cnnlab.optim import OPTIMIZERS, SCHEDULES

    parser = argparse.ArgumentParser()
    add_config_options(parser)
    by_dest = {a.dest: a for a in parser._actions}
    for f in fields(TrainConfig):
        action = by_dest[f.name]
        assert flag_name(f) in action.option_strings
        value = default_value(f)
        if value is not None and not isinstance(value, bool | dict | tuple):
            assert f"(default: {value})" in action.help, f.name
    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES and tuple(SCHEDULES) == SCHEDULE_NAMES
    args = parser.parse_args(
        [
            "--epochs",
            "2",
            "--lr",
            "0.5",
            "--no-normalize",
            "--adam-betas",
            "0.8",
            "0.9",
            "--model-kwargs",
            '{"hidden": [16]}',
            "--root",
            "/tmp/data",
        ]
    )
    config = make_config(**config_overrides(args))
    assert (config.epochs, config.lr, config.normalize, config.adam_betas) == (2, 0.5, False, (0.8, 0.9))
    assert config.model_kwargs == {"hidden": [16]} and config.data_root == "/tmp/data"


def test_help_never_imports_torch():
    """`cnnlab --help` and `cnnlab train --help` stay quick: no torch, no matplotlib."""
    code = (
        "import sys\nfrom cnnlab.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['compare', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "bad = [m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules]\n"
        "sys.exit(f'imported {bad}' if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]


@pytest.mark.parametrize(
    ("others", "load", "env", "expected"),
    [
        (0.0, 0.4, {}, None),  # idle: OpenMP's spinning default (faster there: BENCHMARKS.md)
        (0.0, 1.6, {}, None),  # the 1-minute average still counts a command that just ended
        (2.0, 0.4, {}, "PASSIVE"),  # 2 cores busy now: threads sleep
        (2.0, 1.6, {"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),  # the user's choice wins
        (2.0, 1.6, {"GOMP_SPINCOUNT": "1000"}, None),
        (None, 1.6, {}, "PASSIVE"),  # no /proc/loadavg: the load average decides
        (None, 0.4, {}, None),
    ],
)
def test_omp_wait_policy_follows_what_runs_now(monkeypatch, others, load, env, expected):
    from cnnlab import cli, machine

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(machine, "runnable_others", lambda: others)
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    cli.choose_omp_wait_policy()
    assert cli.os.environ.get("OMP_WAIT_POLICY") == expected


def test_runnable_others_counts_busy_processes():
    """Two spinning processes on this machine are seen as two (at least one) runnable others."""
    from cnnlab.machine import runnable_others

    if runnable_others() is None:
        pytest.skip("no /proc/loadavg here")
    spin = "import time\nt = time.time() + 5\nwhile time.time() < t: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    try:
        time.sleep(0.5)
        assert runnable_others() >= 1
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_torch_commands_import_torch_with_the_collector_paused_then_frozen():
    # a fresh interpreter, as a user's command: torch's objects frozen, the collector back on
    probe = (
        "import gc, sys\n"
        "from cnnlab.cli import main\n"
        "main(['models'])\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 100_000, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stderr.strip().splitlines()[-1] == "True True", done.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc only")
def test_torch_commands_keep_freed_memory_and_torch_free_ones_leave_malloc_alone():
    # eval and explain fault their batches in again as training did (BENCHMARKS.md): every
    # command that computes with torch fixes malloc's thresholds, not only fit
    probe = (
        "import sys\n"
        "from cnnlab import host_memory\n"
        "from cnnlab.cli import main\n"
        "main(sys.argv[1:])\n"
        "print('kept', host_memory._kept, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    env.pop("LD_PRELOAD", None)
    for argv, kept in (
        (["models"], "True"),
        (["shapes", "conv", "--input", "28", "28", "--kernel", "3", "3"], "None"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120, env=env
        )
        assert done.returncode == 0, done.stderr[-500:]
        assert done.stderr.strip().splitlines()[-1] == f"kept {kept}", argv


def test_a_watched_run_takes_sigint_even_when_its_launcher_ignored_it(tmp_path):
    # a non-interactive shell starts `cmd &` with SIGINT ignored; the web's Cancel is a SIGINT
    probe = (
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "import cnnlab.cli as cli\n"
        "cli._run = lambda args: print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN) or 0\n"
        "cli.main(sys.argv[1:])\n"
    )
    for argv, ignored in (
        (["train", "--events", str(tmp_path / "events.jsonl"), "--dataset", "fake"], "False"),
        (["models"], "True"),  # an unwatched command keeps what its launcher chose
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-500:]
        assert done.stdout.strip().splitlines()[-1] == ignored, argv
