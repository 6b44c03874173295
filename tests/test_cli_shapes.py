"""`cnnlab shapes conv|pool|solve|model|pool-matrix` and the old `cnnlab pool`, through cli.main."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tests.test_summary import LessonCNN

from cnnlab import models
from cnnlab.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- shapes conv / pool / solve -------------------------------------------------------------------


def test_conv_prints_the_lessons_formula(capsys):
    code, out, _ = run(capsys, "shapes", "conv", "--input", "28", "28", "--kernel", "3", "3")
    assert code == 0
    assert "-> 26x26" in out
    assert "Oh = (Nh - Fh + 2p)/s + 1 = (28 - 3 + 2*0)/1 + 1 = 26" in out
    assert "Ow = (Nw - Fw + 2p)/s + 1 = (28 - 3 + 2*0)/1 + 1 = 26" in out


def test_conv_non_square_stride_padding_and_uneven_note(capsys):
    code, out, _ = run(
        capsys,
        "shapes",
        "conv",
        "--input",
        "28",
        "28",
        "--kernel",
        "2",
        "4",
        "--stride",
        "2",
        "--padding",
        "1",
    )
    assert code == 0 and "-> 15x14" in out
    code, out, _ = run(capsys, "shapes", "conv", "--input", "28", "--kernel", "3", "--stride", "2")
    assert "-> 13x13" in out and "the last 1 input row is ignored" in out


def test_conv_same_padding_and_json(capsys):
    code, out, _ = run(
        capsys,
        "shapes",
        "conv",
        "--input",
        "28",
        "28",
        "--kernel",
        "5",
        "--padding",
        "same",
        "--dilation",
        "2",
        "--json",
    )
    facts = json.loads(out)
    assert code == 0 and facts["output"] == [28, 28]
    assert facts["axes"]["h"]["pad_before"] == 4 and facts["axes"]["h"]["formula"].endswith("= 28")


def test_conv_impossible_is_one_line_exit_2(capsys):
    code, out, err = run(capsys, "shapes", "conv", "--input", "4", "4", "--kernel", "5", "5")
    assert code == 2 and out == ""
    assert err.startswith("cnnlab: error: conv: axis h (height): kernel 5 is larger than the input 4")
    assert err.count("\n") == 1


def test_bad_flag_values_are_one_line(capsys):
    code, _, err = run(capsys, "shapes", "conv", "--input", "28", "28", "1", "--kernel", "3")
    assert code == 2 and "--input takes one value or two" in err
    code, _, err = run(capsys, "shapes", "conv", "--input", "28", "--kernel", "3", "--padding", "half")
    assert code == 2 and "--padding takes one int" in err


def test_pool_sizes(capsys):
    code, out, _ = run(capsys, "shapes", "pool", "--input", "24", "24", "--kernel", "2")
    assert code == 0 and "stride 2" in out and "-> 12x12" in out
    code, out, _ = run(capsys, "shapes", "pool", "--input", "5", "--kernel", "2", "--ceil-mode")
    assert "-> 3x3" in out and "ceil(3/2) + 1 = 3" in out


@pytest.mark.parametrize(
    "kernel,target,answer",
    [
        (["3", "3"], ["26", "26"], "stride=1, padding=0"),
        (["3", "3"], ["28", "28"], "stride=1, padding=1"),
        (["2", "4"], ["15", "14"], "stride=2, padding=1"),
    ],
)
def test_solve_the_lessons_three_exercises(capsys, kernel, target, answer):
    code, out, _ = run(
        capsys, "shapes", "solve", "--input", "28", "28", "--kernel", *kernel, "--target", *target
    )
    assert code == 0
    assert f"simplest: F.conv2d(image, filter, {answer})" in out


def test_solve_nothing_fits_shows_nearest(capsys):
    code, out, _ = run(
        capsys, "shapes", "solve", "--input", "28", "28", "--kernel", "3", "3", "--target", "3", "40"
    )
    assert code == 1
    assert "nothing in that range gives 3x40" in out and "7x30" in out


def test_solve_long_answer_lists_are_cut_and_limits_checked(capsys):
    code, out, _ = run(
        capsys,
        "shapes",
        "solve",
        "--input",
        "100",
        "--kernel",
        "3",
        "--target",
        "20",
        "30",
        "--max-stride",
        "32",
        "--max-padding",
        "32",
    )
    assert code == 0 and "more (--json lists them all)" in out
    code, _, err = run(
        capsys,
        "shapes",
        "solve",
        "--input",
        "28",
        "--kernel",
        "3",
        "--target",
        "3",
        "--max-stride",
        "33",
    )
    assert code == 2 and "max stride 33 must be between 1 and 32" in err


def test_solve_json(capsys):
    code, out, _ = run(
        capsys, "shapes", "solve", "--input", "28", "--kernel", "3", "--target", "26", "--json"
    )
    facts = json.loads(out)
    assert code == 0 and facts["matches"][0] == {"stride": [1, 1], "padding": [0, 0], "size": [26, 26]}


# -- cnnlab shapes pool-matrix ---------------------------------------------------------------------


def test_pool_lesson_exercise(capsys):
    code, out, _ = run(capsys, "shapes", "pool-matrix", "--op", "both", "[[2,3],[5,6]]")
    assert code == 0
    lines = out.splitlines()
    assert lines[lines.index("max pooling:") + 1].strip() == "6"
    assert lines[lines.index("average pooling:") + 1].strip() == "4"
    assert "rows 0-1, cols 0-1  [[2, 3], [5, 6]]  -> max 6, avg 4" in out


def test_pool_from_file_with_stride(capsys, tmp_path):
    f = tmp_path / "m.txt"
    f.write_text("1 2 3\n4 5 6\n7 8 9\n")
    code, out, _ = run(
        capsys, "shapes", "pool-matrix", "--op", "max", "--kernel", "2", "--stride", "1", str(f)
    )
    assert code == 0 and "output 2x2" in out
    assert "5 6\n  8 9" in out


def test_pool_json_and_large_input_skips_windows(capsys):
    rows = [[float(i * 40 + j) for j in range(40)] for i in range(40)]
    code, out, _ = run(capsys, "shapes", "pool-matrix", "--op", "avg", json.dumps(rows))
    assert code == 0 and "output 20x20" in out and "windows:" not in out
    code, out, _ = run(capsys, "shapes", "pool-matrix", "--json", "[[2,3],[5,6]]")
    assert json.loads(out)["max"] == [[6.0]] and json.loads(out)["avg"] == [[4.0]]


@pytest.mark.parametrize(
    "matrix,message",
    [
        ("[[1,2],[3]]", "ragged"),
        ("[[1,'x']]", "not a number"),
        ("[]", "empty"),
        ("nope.txt", "neither a matrix"),
        ("[[1]]", "kernel 2 is larger than the input 1"),
    ],
)
def test_pool_bad_matrices_one_line(capsys, matrix, message):
    code, out, err = run(capsys, "shapes", "pool-matrix", matrix)
    assert code == 2 and message in err and err.count("\n") == 1


def test_pool_long_literal_is_not_taken_for_a_file_name(capsys):
    row = "[" + ",".join(["1"] * 300) + "]"  # longer than a file name may be
    code, out, _ = run(capsys, "shapes", "pool-matrix", "--op", "max", f"[{row},{row}]")
    assert code == 0 and "output 1x150" in out


def test_pool_binary_file(capsys, tmp_path):
    f = tmp_path / "m.bin"
    f.write_bytes(b"\xff\xfe\x00\x01")
    code, _, err = run(capsys, "shapes", "pool-matrix", str(f))
    assert code == 2 and "not a text file" in err


def test_old_pool_name_still_works_and_says_it_is_renamed(capsys):
    code, out, err = run(capsys, "pool", "--op", "both", "[[2,3],[5,6]]")
    assert code == 0
    assert err == (
        "cnnlab: note: 'cnnlab pool' is now 'cnnlab shapes pool-matrix'; "
        "the old name goes in the next release\n"
    )
    _, new_out, new_err = run(capsys, "shapes", "pool-matrix", "--op", "both", "[[2,3],[5,6]]")
    assert out == new_out and new_err == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["shapes", "conv", "--input", "28", "--kernel", "3"],
        ["shapes", "pool", "--input", "24", "--kernel", "2", "--json"],
        ["shapes", "solve", "--input", "28", "--kernel", "3", "--target", "28"],
        ["shapes", "pool-matrix", "[[2,3],[5,6]]"],
    ],
)
def test_shape_commands_do_not_import_torch(argv):
    # a fresh interpreter: this test process has torch loaded already
    probe = (
        "import sys\n"
        "from cnnlab.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr


# -- shapes model ---------------------------------------------------------------------------------


@pytest.fixture
def broken_lesson_model(monkeypatch):
    """Make get_model("lesson-broken") the lesson's CNN with 16 channels and Linear(16, 128)."""
    real = models.get_model

    def get_model(name, input_shape=(1, 28, 28), **kwargs):
        return LessonCNN(16) if name == "lesson-broken" else real(name, input_shape, **kwargs)

    monkeypatch.setattr(models, "get_model", get_model)


def _row(out, name):
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def test_model_table(capsys):
    code, out, _ = run(capsys, "shapes", "model", "lesson-cnn", "--input", "1", "28", "28")
    assert code == 0
    assert out.startswith("lesson-cnn (LessonCNN) on input (B, 1, 28, 28)")
    model = models.get_model("lesson-cnn")
    c2 = model.features.conv2.out_channels
    assert f"(B, {c2}, 4, 4)" in _row(out, "features.pool2")
    linear1 = _row(out, "classifier.linear1")
    assert f"{(c2 * 16 + 1) * 128:,}" in linear1 and linear1.rstrip().endswith(f"{c2 * 16}")
    total = sum(p.numel() for p in model.parameters())
    assert f"total: {total:,} parameters ({total:,} trainable)" in out
    assert f"{models.count_macs(model, (1, 28, 28)):,} MACs per image" in out


def test_model_mismatch_names_layer_and_256(capsys, broken_lesson_model):
    code, out, err = run(capsys, "shapes", "model", "lesson-broken")
    assert code == 2
    assert "has 16, needs 256" in _row(out, "linear1")  # the table marks the row
    assert err.count("\n") == 1 and "mat1" not in err
    assert "linear1 (Linear) has in_features=16 but each image brings 256 features" in err


def test_model_input_builds_for_that_shape_and_json(capsys):
    code, out, _ = run(capsys, "shapes", "model", "mlp", "--input", "3", "32", "32", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["ok"] and facts["output_shape"] == [2, 10]
    assert facts["layers"][1]["in_features"] == 3 * 32 * 32
    code, _, err = run(capsys, "shapes", "model", "no-such-model")
    assert code == 2 and "unknown model 'no-such-model'" in err


def test_model_from_run_folder(capsys, tmp_path):
    from cnnlab.data.datasets import DATASETS
    from cnnlab.runs import run_metadata, save_weights

    model = models.get_model("lenet5")
    save_weights(tmp_path / "model.safetensors", model, run_metadata("lenet5", {}, DATASETS["mnist"]))
    code, out, _ = run(capsys, "shapes", "model", str(tmp_path))
    assert code == 0 and out.startswith("lenet5 (LeNet5) on input (B, 1, 28, 28)")
    # --input on a run folder checks the trained model against another size: a named mismatch
    code, out, err = run(capsys, "shapes", "model", str(tmp_path), "--input", "1", "32", "32")
    assert code == 2 and "has in_features=" in err and "mat1" not in err


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", models.list_models())
def test_every_registered_model_agrees_with_a_forward_pass(capsys, name, shape):
    code, out, _ = run(capsys, "shapes", "model", name, "--input", *map(str, shape), "--json")
    facts = json.loads(out)
    assert code == 0 and facts["ok"] and facts["mismatches"] == []
    model = models.get_model(name, input_shape=shape).eval()
    seen = {}
    names = {m: n for n, m in model.named_modules() if not any(True for _ in m.children())}

    def record(mod, args, y):  # a forward hook must return None, or it replaces the output
        seen.setdefault(names[mod], list(y.shape))

    hooks = [m.register_forward_hook(record) for m in names]
    with torch.no_grad():
        y = model(torch.zeros(2, *shape))
    for h in hooks:
        h.remove()
    assert facts["output_shape"] == list(y.shape) == [2, 10]
    assert {layer["name"]: layer["output_shape"] for layer in facts["layers"]} == seen
    assert facts["total_params"] == sum(p.numel() for p in model.parameters())
    assert facts["total_macs"] == models.count_macs(model, shape)
