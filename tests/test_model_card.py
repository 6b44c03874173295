"""The model card RUN/README.md: what the model is, expects and scored, and how to use it."""

from __future__ import annotations

import json
import shlex

from cnnlab import runs
from cnnlab.cli import build_parser
from cnnlab.cli.config_flags import config_overrides
from cnnlab.cli.train import _config_and_out
from cnnlab.config import make_config
from cnnlab.model_card import model_card, train_command, write_model_card
from cnnlab.models import count_macs, count_parameters, get_model
from cnnlab.train import fit


def test_the_card_describes_model_data_scores_and_use(fake_dataset, tmp_path):
    run = tmp_path / "run"
    config = make_config(
        dataset="fake",
        model="cnn",
        model_kwargs={"width": 8},
        device="cpu",
        threads=1,
        batch_size=64,
        epochs=1,
        val_split=100,
        adam_betas=(0.8, 0.99),
    )
    fit(config, run)
    card = (run / runs.MODEL_CARD).read_text()
    model = get_model("cnn", (1, 28, 28), 10, width=8)
    assert card.startswith("# run: cnn on fake\n")
    assert '`cnn`, options `{"width": 8}`' in card
    assert f"parameters: {count_parameters(model):,}" in card
    assert f"per image: {count_macs(model, (1, 28, 28)):,}" in card
    assert "(N, 1, 28, 28)" in card and "mean [0.2] and std [0.3]" in card
    assert 'style "digits": centred by mass like MNIST' in card
    final = json.loads((run / runs.METRICS).read_text())[-1]
    assert f"| validation (held out of the training set) | {100 * final['val_acc']:.2f}% |" in card
    assert f"| test | {100 * final['test_acc']:.2f}% |" in card
    assert "Settings were chosen on the validation split" in card
    assert "Run `cnnlab eval" in card  # no eval.json yet
    assert f'import cnnlab\np = cnnlab.load({json.dumps(str(run))})\np.predict(["digit.png"])' in card
    assert "Limits" in card and 'no "none of these" answer' in card
    # the command in the card trains the same config again
    command = next(line for line in card.splitlines() if line.startswith("cnnlab train "))
    args = build_parser().parse_args([*shlex.split(command)[1:], "--overwrite"])
    again, out = _config_and_out(args, config_overrides(args))
    assert again == config and out == run


def test_per_class_scores_appear_once_eval_has_run(fake_dataset, tmp_path):
    from cnnlab.evaluation import evaluate_run

    run = tmp_path / "run"
    fit(make_config(dataset="fake", model="mlp", device="cpu", threads=1, epochs=1), run)
    assert "No validation split" in model_card(run)
    report = evaluate_run(run, device="cpu")
    card = write_model_card(run).read_text()
    assert "| class | precision | recall | F1 | images |" in card
    first = report["per_class"][0]
    assert f"| {first['class']} | {first['precision']:.3f} | {first['recall']:.3f} |" in card


def test_train_command_lists_only_what_differs_from_the_defaults():
    config = make_config(model="mlp", normalize=False, adam_betas=(0.7, 0.9), data_root="/d r")
    command = train_command(json.loads(json.dumps(config.__dict__)), "runs/x")
    assert command == (
        "cnnlab train --model mlp --adam-betas 0.7 0.9 --no-normalize --root '/d r' --out runs/x"
    )


def test_a_run_that_left_bf16_to_the_hardware_says_the_flags_cannot_repeat_it(fake_dataset, tmp_path):
    import dataclasses

    run = tmp_path / "run"
    base = make_config(dataset="fake", model="mlp", device="cpu", threads=1, epochs=1)
    fit(dataclasses.replace(base, bf16=None), run)  # as the fast recipe leaves it
    card = model_card(run)
    assert "bf16 was left to the hardware" in card and f"--config {run / 'config.json'}" in card
    plain = tmp_path / "plain"
    fit(base, plain)
    assert "left to the hardware" not in model_card(plain)


def test_a_tta_run_says_what_a_single_read_scores(fake_dataset, tmp_path):
    """The headline averages shifted reads; predict, the web app and exports read once, and
    the card and eval.json say what that reads too."""
    from cnnlab.evaluation import evaluate_run

    run = tmp_path / "run"
    config = make_config(dataset="fake", model="mlp", device="cpu", threads=1, epochs=1, tta=4)
    final = fit(config, run).final
    card = model_card(run)
    assert "average 4 one-pixel shifts" in card
    assert f"read each image once, which reads {100 * final['test_acc_one_pass']:.2f}%" in card
    report = evaluate_run(run, device="cpu")
    assert report["tta"] == 4 and report["accuracy_one_pass"] == final["test_acc_one_pass"]
    plain = tmp_path / "plain"
    fit(make_config(dataset="fake", model="mlp", device="cpu", threads=1, epochs=1), plain)
    assert "read each image once" not in model_card(plain)
    assert "accuracy_one_pass" not in evaluate_run(plain, device="cpu")
