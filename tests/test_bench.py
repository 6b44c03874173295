"""The fast/best recipes end to end, TTA, and the benchmark JSON, on tiny fake data.

The benchmarks run here on the 600/200-image fake dataset written under the name "mnist" (so
torchvision's own MNIST class reads it for the lesson-loop baseline). No test asserts a time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from cnnlab import bench, machine
from cnnlab.cli import main
from cnnlab.config import TrainConfig, make_config
from cnnlab.data.factory import first_images, load_batches
from cnnlab.errors import ConfigError
from cnnlab.evaluation import TTA_SHIFTS, evaluate
from cnnlab.models import count_macs, get_model
from cnnlab.train import INIT_IMAGES, fit

SPEEDRUN_FIELDS = {
    "benchmark",
    "recipe",
    "device",
    "machine",
    "config",
    "threads",
    "seeds",
    "train_s",
    "test_acc",
    "eval_s",
    "target",
    "reached_target",
    "train_time_is",
    "excluded",
    "baseline",
    "speedup_vs_baseline",
    "load_average_before",
    "load_average_after",
}
STATS = {"mean", "median", "min", "max"}


def test_fast_model_is_cheap_and_flattens_to_576():
    model = get_model("fast")
    assert model.classifier[1].in_features == 576  # (B, 64, 3, 3) after conv3
    # the published GPU recipe's conv24/conv32 net does 1.7 M multiply-adds per image
    assert count_macs(model, (1, 28, 28)) < 250_000
    with pytest.raises(ConfigError):
        get_model("fast", widths=(8, 0, 64))


@pytest.mark.parametrize("recipe", ["fast", "quick", "best"])
def test_recipes_run_end_to_end_on_a_small_subset(fake_dataset, recipe):
    # all 600 images: onecycle needs more than 4 steps (torch's OneCycleLR divides by zero)
    config = make_config(recipe, dataset="fake", device="cpu", epochs=2)
    assert config.model == {"fast": "fast", "quick": "fast", "best": "cnn"}[recipe]
    result = fit(config)
    assert len(result.metrics) == 2
    # test-time augmentation is for the final figure; earlier epochs are evaluated plainly
    assert [m["tta"] for m in result.metrics] == [0, config.tta]
    # 10 classes: chance is 0.1. Ten steps of the augmented, label-smoothed `best` recipe on
    # 600 images land anywhere between 0.5 and 0.8 depending on thread scheduling, so the bar
    # is "clearly learning", not a tuned figure.
    assert result.final["test_acc"] > 0.3


def test_fast_recipe_settings_come_from_the_experiments():
    config = make_config("fast")
    assert (config.epochs, config.batch_size, config.lr) == (1, 384, 0.04)
    assert config.adam_betas == (0.7, 0.9) and config.label_smoothing == 0.1
    assert config.channels_last and config.threads is None  # all cores (BENCHMARKS.md)
    assert config.bf16 is None  # bf16 only where AMX makes it pay (cnnlab.devices.use_bf16)
    assert config.model_kwargs == {"stem": "whiten", "widths": [12, 24, 64]} and config.tta == 4
    # a config never shares the recipe's dicts: changing one leaves the next untouched
    config.model_kwargs["widths"] = [8, 8, 8]
    assert make_config("fast").model_kwargs["widths"] == [12, 24, 64]


def test_quick_recipe_keeps_its_own_batch_when_fast_changes():
    # quick starts from fast's settings; its batch and lr were chosen on validation separately
    config = make_config("quick")
    assert (config.epochs, config.batch_size, config.lr) == (4, 256, 0.03)
    assert config.model_kwargs == {"stem": "whiten", "widths": [24, 48, 128]}
    assert config.bf16 and config.augment and (config.rotate, config.scale) == (10.0, 0.1)
    assert config.adam_betas == make_config("fast").adam_betas and config.tta == 4


def test_best_recipe_is_width_32_bf16_with_rotations():
    config = make_config("best")
    assert config.model == "cnn" and config.model_kwargs == {"width": 32}
    assert config.bf16 and config.augment and (config.rotate, config.scale) == (10.0, 0.1)
    assert (config.optimizer, config.weight_decay, config.tta) == ("adamw", 0.05, 8)


def test_fast_recipe_freezes_its_whitening_stem_and_times_it(fake_dataset):
    config = make_config("fast", dataset="fake", device="cpu", epochs=2)
    torch.manual_seed(config.seed)
    fresh = get_model(config.model, (1, 28, 28), 10, **config.model_kwargs)
    result = fit(config)
    stem, fresh_stem = result.model.features.conv1, fresh.features.conv1
    assert not stem.weight.requires_grad and stem.bias is None
    # init_from_data replaced the random weights once, and training never moved them
    assert not torch.allclose(stem.weight, fresh_stem.weight)
    again = get_model(config.model, (1, 28, 28), 10, **config.model_kwargs)
    train = load_batches(config, torch.device("cpu")).train
    again.init_from_data(first_images(train, INIT_IMAGES))
    torch.testing.assert_close(stem.weight, again.features.conv1.weight)
    assert not torch.allclose(result.model.features.conv2.weight, fresh.features.conv2.weight)
    assert result.train_seconds == pytest.approx(sum(m["seconds"] for m in result.metrics))


def test_adam_betas_and_tta_validate_and_survive_json():
    config = make_config("fast", tta=2)
    again = TrainConfig.from_dict(json.loads(json.dumps(config.__dict__)))
    assert again == config and again.adam_betas == (0.7, 0.9)
    with pytest.raises(ConfigError, match="adam betas"):
        make_config(adam_betas=(0.9, 1.5))
    with pytest.raises(ConfigError, match="tta"):
        make_config(tta=len(TTA_SHIFTS) + 1)


def test_tta_averages_probabilities_over_shifts(fake_dataset):
    config = make_config("fast", dataset="fake", device="cpu", train_subset=256, batch_size=32)
    result = fit(config)
    test = load_batches(config, torch.device("cpu")).test
    plain = evaluate(result.model, test, return_outputs=True)
    shifted = evaluate(result.model, test, return_outputs=True, tta=4)
    assert plain["n"] == shifted["n"] == 200
    torch.testing.assert_close(shifted["probs"].sum(1), torch.ones(200))
    assert not torch.allclose(plain["probs"], shifted["probs"])  # the shifts change the average
    # tta=0 is exactly the plain path
    torch.testing.assert_close(
        evaluate(result.model, test, return_outputs=True, tta=0)["probs"], plain["probs"]
    )
    # beside the average, the single read that Predictor and the web app make
    assert shifted["acc_one_pass"] == plain["acc"] and "acc_one_pass" not in plain
    assert result.final["test_acc_one_pass"] == plain["acc"]  # fit's final row: the same model


def test_speedrun_json_has_every_field(fake_mnist, tmp_path):
    result = bench.speedrun(seeds=2, target=0.5)
    assert set(result) >= SPEEDRUN_FIELDS
    assert [r["seed"] for r in result["seeds"]] == [0, 1]
    for r in result["seeds"]:
        assert set(r) >= {"train_s", "test_acc", "test_acc_one_pass", "eval_s", "fit_overhead_s"}
        assert r["train_s"] > 0 and 0 <= r["test_acc"] <= 1 and 0 <= r["test_acc_one_pass"] <= 1
    for key in ("train_s", "test_acc", "test_acc_one_pass", "eval_s"):  # fast: TTA, and one read
        assert set(result[key]) == STATS
        assert result[key]["min"] <= result[key]["median"] <= result[key]["max"]
    assert result["reached_target"] == (result["test_acc"]["mean"] >= 0.5)
    assert set(result["excluded"]) >= {
        "process_start_s",
        "data_load_s",
        "fit_overhead_s_mean",
        "device_warmup_s",
    }
    assert result["excluded"]["device_warmup_s"] > 0  # one warm-up run, on the CPU too
    base = result["baseline"]
    assert base["train_images"] == 600 and base["steps"] == 10  # 600 / batch 64, rounded up
    assert base["threads"] == result["threads"]  # the recipe's threads, for both
    assert result["speedup_vs_baseline"] == pytest.approx(base["train_s"] / result["train_s"]["mean"])
    ref = result["reference"]  # the published recipe, seed for seed through the same fit
    assert ref["recipe"] == "reference" and [r["seed"] for r in ref["seeds"]] == [0, 1]
    assert 0 < result["roofline"]["fraction_of_gemm"] and result["roofline"]["gemm_gmacs_per_s"] > 0
    assert result["speedup_vs_reference"] == pytest.approx(
        ref["train_s"]["mean"] / result["train_s"]["mean"]
    )
    pairs = [r["train_s"] / m["train_s"] for m, r in zip(result["seeds"], ref["seeds"], strict=True)]
    assert set(result["speedup_per_seed"]) == STATS  # seed by seed: the host's drift shows
    assert result["speedup_per_seed"]["min"] == pytest.approx(min(pairs))
    assert result["speedup_per_seed"]["max"] == pytest.approx(max(pairs))
    machine = result["machine"]
    assert set(machine) >= {
        "cpu",
        "cores",
        "flags",
        "torch",
        "threads",
        "torch_cpu_capability",
        "omp_wait_policy",
    }
    path = bench.save_result(result, tmp_path / "results")
    assert path.name == "speedrun-cpu.json" and json.loads(path.read_text())["recipe"] == "fast"


def test_batches_and_best_json(fake_mnist):
    threads = torch.get_num_threads()
    b = bench.batches_benchmark(batch_size=64)  # at 1 thread by default
    assert b["threads"] == 1
    assert torch.get_num_threads() == threads  # given back: `bench all` runs speedrun next
    assert b["images"] == 600 and b["in_memory"]["images"] == b["dataloader"]["images"] == 600
    assert b["speedup"] == pytest.approx(
        b["in_memory"]["images_per_s"] / b["dataloader"]["images_per_s"]
    )
    best = bench.best_run(seeds=2, ensemble=2, epochs=1)
    assert len(best["seeds"]) == 2 and best["config"]["tta"] == 8
    assert 0 <= best["ensemble"]["test_acc"] <= 1 and best["ensemble"]["models"] == 2
    with pytest.raises(ConfigError):
        bench.best_run(seeds=1, ensemble=2)


def test_markdown_section_is_replaced_not_appended(fake_mnist, tmp_path):
    results = tmp_path / "results"
    bench.save_result(bench.speedrun(seeds=1, baseline=False), results)
    bench.save_result(bench.batches_benchmark(max_batches=2), results)
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nHand-written notes stay.\n")
    for _ in range(2):
        bench.update_markdown(md, bench.load_results(results))
    text = md.read_text()
    assert text.count(bench.MARK_BEGIN) == 1 and text.count(bench.MARK_END) == 1
    assert "Hand-written notes stay." in text
    assert "#### speedrun: recipe `fast`" in text and "#### batches" in text
    assert "cores" in text and "thread(s)" in text
    assert "| read once, no TTA (%) |" in text  # fast's figures average shifts: one read beside
    assert "The published recipe in the same run" in text and "as fast (means)" in text
    # the roof is a GEMM in the dtype training ran in (bf16 for fast where the CPU has AMX)
    assert "Roofline: " in text and re.search(r"1024\^3 (float32|bfloat16) GEMM", text)


def test_markdown_shows_the_whole_commands_beside_import_torch(fake_mnist):
    result = bench.speedrun(seeds=1, baseline=False, reference=False)
    stat = lambda median: {"mean": median, "median": median, "min": median, "max": median}  # noqa: E731
    result["commands"] = {
        "what": "...",
        "runs": 3,
        "import_torch_s": stat(2.0),
        "train_command_s": stat(4.0),
        "train_command_training_s": stat(1.25),
        "predict_command_s": stat(1.5),
        "serve_command_s": stat(2.5),
    }
    text = bench.markdown_tables([result])
    assert "medians of 3 fresh processes" in text
    assert "| `cnnlab train --recipe fast` | 4.00 | +0.75 s beyond it and 1.25 s of training |" in text
    assert "| `cnnlab predict RUN one.png` | 1.50 | -0.50 s |" in text
    assert "| `cnnlab serve RUN` until /healthz answers | 2.50 | +0.50 s |" in text
    assert "The published recipe" not in text  # reference=False: no line for it


def test_cli_bench_speedrun_writes_json_and_table(fake_mnist, tmp_path, capsys):
    out, md = tmp_path / "results", tmp_path / "B.md"
    code = main(
        [
            "bench",
            "speedrun",
            "--seeds",
            "1",
            "--quiet",
            "--out",
            str(out),
            "--markdown",
            str(md),
            "--target",
            "0.5",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "training wall time (s)" in printed and "the lesson's loop" in printed
    assert "read once, no TTA (%)" in printed
    assert set(json.loads((out / "speedrun-cpu.json").read_text())) >= SPEEDRUN_FIELDS
    assert "#### speedrun" in md.read_text()


def test_speedrun_ratio_words_stay_right_below_1x():
    from cnnlab.cli.bench import _versus

    assert _versus(8.3) == "the recipe is 8.3x faster"
    assert _versus(1.002) == "the recipe is 1.00x faster"
    assert _versus(0.932) == "the recipe takes 1.07x its time"  # never "0.9x slower"


def test_speedrun_names_the_seed_by_seed_spread_of_its_ratio():
    from cnnlab.bench.report import per_seed_range
    from cnnlab.cli.bench import _speedrun_extras

    ref = {"train_s": {"mean": 12.4}, "test_acc": {"mean": 0.9915}}
    run = {"reference": ref, "speedup_vs_reference": 7.74}
    spread = {"mean": 7.9, "median": 7.6, "min": 7.31, "max": 8.64}
    assert _speedrun_extras({**run, "speedup_per_seed": spread})[0] == (
        "the published recipe: 12.40 s -> 99.15 %, the recipe is 7.7x faster (per seed 7.3-8.6x)"
    )
    assert per_seed_range({"speedup_per_seed": {**spread, "min": 1.104, "max": 1.21}}) == "1.10-1.21x"
    one = {"mean": 7.7, "median": 7.7, "min": 7.7, "max": 7.7}
    assert per_seed_range({"speedup_per_seed": one}) == per_seed_range({}) == ""  # one seed: no spread


def test_quick_recipe_is_the_fast_net_widened_in_bf16_where_the_cpu_has_it():
    config = make_config("quick")
    assert config.model == "fast" and config.model_kwargs["widths"] == [24, 48, 128]
    assert (config.epochs, config.rotate, config.scale, config.bf16) == (4, 10.0, 0.1, True)


def test_cli_bench_writes_under_runs_unless_recorded(fake_mnist, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["bench", "batches", "--max-batches", "2", "--quiet"]
    assert main(args) == 0
    assert "runs/bench/batches.json" in capsys.readouterr().out
    assert (tmp_path / "runs/bench/batches.json").is_file()
    assert "#### batches" in (tmp_path / "runs/bench/BENCHMARKS.md").read_text()
    assert not (tmp_path / "benchmarks").exists()  # the committed figures are left alone
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks/BENCHMARKS.md").write_text("# Benchmarks\n\nNotes.\n")
    assert main([*args, "--record"]) == 0
    assert (tmp_path / "benchmarks/results/batches.json").is_file()
    recorded = (tmp_path / "benchmarks/BENCHMARKS.md").read_text()
    assert "Notes." in recorded and "#### batches" in recorded


def test_cli_bench_rejects_bad_settings(fake_mnist, tmp_path, capsys):
    assert main(["bench", "speedrun", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 amx_tile
"""


def test_machine_reads_cpuinfo_once_for_every_caller(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text(CPUINFO + "\n" + CPUINFO.replace("processor\t: 0", "processor\t: 1"))
    monkeypatch.setattr(machine, "CPUINFO", fake)
    machine.cpu_info.cache_clear()
    try:
        cpu = machine.cpu_info()
        assert (cpu.name, cpu.family, cpu.model) == ("AMD EPYC 9B14", "25", "17")
        assert {"avx2", "avx512_bf16", "sse2"} <= machine.cpu_flags()
        line = machine.machine_description()
        assert line.startswith("AMD EPYC 9B14 (family 25 model 17), ")
        assert line.endswith(" cores, avx2 fma avx512f avx512_bf16 amx_tile")
        info = machine.machine_info()
        assert (info["cpu_family"], info["model"]) == ("25", "17") and "sse2" not in info["flags"]
        monkeypatch.setattr(machine, "CPUINFO", tmp_path / "missing")  # not Linux
        machine.cpu_info.cache_clear()
        assert machine.cpu_info().family is None and machine.cpu_flags() == set()
        assert "cpu_family" not in machine.machine_info()
    finally:
        machine.cpu_info.cache_clear()
    load = machine.load_average()
    assert load is None or len(load) == 3


def test_machine_module_does_not_import_torch():
    probe = "import sys, cnnlab.machine as m; m.machine_description(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_process_start_is_measured():
    assert 0 < bench.process_start_seconds() < 600  # a real subprocess importing torch


@pytest.mark.slow
def test_fast_recipe_reaches_99_percent_on_real_mnist(real_root):
    # BENCHMARKS.md has the per-seed figures; 98.9 leaves room for another CPU's float
    # rounding without letting a broken recipe through
    result = fit(make_config("fast", device="cpu", seed=0))
    assert result.final["test_acc"] >= 0.989
    assert len(result.metrics) == 1


@pytest.mark.slow
def test_speedrun_times_the_whole_commands(real_root):
    """`commands`: what the user waits for (fresh processes), beside the training seconds."""
    result = bench.speedrun(
        seeds=1,
        train_subset=2048,
        test_subset=500,
        threads=1,
        baseline=False,
        reference=False,
        commands=1,
    )
    timed = result["commands"]
    keys = ("import_torch_s", "train_command_s", "train_command_training_s", "predict_command_s")
    for key in (*keys, "serve_command_s"):
        assert set(timed[key]) == STATS and timed[key]["min"] > 0, key
    # the command includes Python, torch and the data load on top of its own training seconds
    assert timed["train_command_s"]["mean"] > timed["train_command_training_s"]["mean"]


def test_a_bf16_run_is_measured_against_a_bf16_gemm(monkeypatch):
    from cnnlab.bench import roofline as rl

    rates = {torch.float32: 100e9, torch.bfloat16: 400e9}  # AMX: several times the float32 roof
    monkeypatch.setattr(rl, "gemm_macs_per_second", lambda dtype=torch.float32: rates[dtype])
    r = rl.roofline(model_macs=1_000_000, images=60_000, train_seconds=1.0, bf16=True)
    assert r["gemm_dtype"] == "bfloat16" and r["training_gmacs_per_s"] == pytest.approx(180.0)
    assert r["fraction_of_gemm"] == pytest.approx(0.45) and r["gemm_fp32_gmacs_per_s"] == 100.0
    plain = rl.roofline(model_macs=1_000_000, images=60_000, train_seconds=1.0)
    assert plain["gemm_dtype"] == "float32" and plain["fraction_of_gemm"] == pytest.approx(1.8)
