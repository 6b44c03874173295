"""Report figures and sentences a reader looks at: no overlapping text, honest percentages,
compare's settings and its summary sentence."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from cnnlab import figures
from cnnlab.explain import explain_image
from cnnlab.predict import Predictor
from cnnlab.reports.explain_figures import write_explanation
from cnnlab.runs import load_run
from drawn import draw_digit
from tiny_runs import make_run


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of a drawn figure whose bounding boxes overlap."""
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)  # lays out constrained figures, as savefig does
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_visible()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_text().strip()]
    return [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]


@pytest.fixture
def explanation(fake_dataset, tmp_path):
    run_dir = make_run(tmp_path / "run", "fake", "lesson-cnn", {"channels": (4, 6)}, epochs=1)
    return explain_image(Predictor(load_run(run_dir)), draw_digit(2), name="a_long_file_name.png")


def test_no_text_of_an_explanation_figure_overlaps_another(explanation, tmp_path, monkeypatch):
    checked = {}
    save = figures.save_figure

    def check_then_save(fig, out, *args, **kwargs):
        checked[out.name] = overlapping_texts(fig)
        return save(fig, out, *args, **kwargs)

    monkeypatch.setattr(figures, "save_figure", check_then_save)
    write_explanation(explanation, tmp_path / "explain")
    assert "01_input.png" in checked and len(checked) >= 3
    assert all(not pairs for pairs in checked.values()), {k: v for k, v in checked.items() if v}


@pytest.mark.parametrize(
    ("count", "total", "text"),
    [
        (1000, 1000, "100"),
        (999, 1000, ">99"),  # one error: never "100"
        (995, 1000, ">99"),
        (994, 1000, "99"),
        (500, 1000, "50"),
        (5, 1000, "<1"),  # rounds to 0 or 1, but some images are there
        (1, 1000, "<1"),
        (10, 1000, "1"),
        (0, 1000, "0"),
    ],
)
def test_confusion_percentages_never_round_to_100_or_0(count, total, text):
    assert figures.percent_text(count, total) == text


def test_compare_trains_mlp_with_the_lesson_settings_the_demo_uses():
    from cnnlab.cli.compare import with_lesson_settings
    from cnnlab.config import make_config
    from cnnlab.reports.demo import demo_configs

    per_model = with_lesson_settings(["mlp", "lesson-cnn", "cnn"], {"epochs": 2}, {})
    assert set(per_model) == {"mlp"}  # the other models keep the shared defaults
    compared = make_config(None, epochs=2, model="mlp", **per_model["mlp"])
    base, demo = demo_configs()
    assert compared == replace(base, model="mlp", **demo["mlp"])
    assert (compared.lr, compared.batch_size, compared.normalize) == (0.01, 64, False)
    # a flag wins over the lesson's value, shared or per model
    assert with_lesson_settings(["mlp"], {"lr": 0.1}, {})["mlp"].get("lr") is None
    assert with_lesson_settings(["mlp"], {}, {"mlp": {"batch_size": 8}})["mlp"]["batch_size"] == 8


def _row(name: str, errors: int, params: int = 1000, macs: int = 1000):
    from cnnlab.config import TrainConfig
    from cnnlab.reports.compare import ComparedModel

    acc = 1 - errors / 10_000
    return ComparedModel(name, None, params, macs, 1.0, 1.0, acc, 0.1, errors, TrainConfig())


def test_the_summary_sentence_names_every_compared_model():
    from cnnlab.reports.compare import lesson_sentence

    text = lesson_sentence([_row("mlp", 246), _row("lesson-cnn", 150), _row("cnn", 90, 2000)])
    assert "cnn made 90 test errors against mlp's 246" in text
    assert "lesson-cnn, 150 errors (98.50 %)" in text
    two = lesson_sentence([_row("mlp", 246), _row("cnn", 90)])
    assert "In between" not in two and "mlp" in two and "cnn" in two


def test_report_says_1_epoch_not_1_epochs(tmp_path):
    from cnnlab.reports.compare import write_report

    one, two = _row("mlp", 246), _row("cnn", 90)
    one.run_dir, two.run_dir = tmp_path / "mlp", tmp_path / "cnn"
    one.config, two.config = replace(one.config, epochs=1), replace(two.config, epochs=2)
    text = write_report([one, two], tmp_path, "t").read_text()
    assert "1 epoch," in text and "2 epochs," in text and "1 epochs" not in text


def test_training_curves_draw_the_logged_steps_of_each_epoch(tmp_path, monkeypatch):
    """A one-epoch run is a curve: step k of an epoch's n at epoch - 1 + k / n, ending on the
    epoch's own marker; without step rows the epochs alone are drawn."""
    steps = [
        {"epoch": e, "step": k, "loss": 2.0 / (e + k / 47), "acc": 0.6 + 0.1 * e + k / 470}
        for e in (1, 2)
        for k in (20, 40, 47)
    ]
    metrics = [
        {"epoch": e, "train_loss": steps[3 * e - 1]["loss"], "train_acc": steps[3 * e - 1]["acc"]}
        | {"test_loss": 0.1, "test_acc": 0.99}
        for e in (1, 2)
    ]
    drawn = {}
    save = figures.save_figure

    def keep_then_save(fig, out, *args, **kwargs):
        drawn[out.name] = fig.axes[0].lines[0].get_xydata().tolist()
        return save(fig, out, *args, **kwargs)

    monkeypatch.setattr(figures, "save_figure", keep_then_save)
    figures.training_curves(metrics, tmp_path / "steps.png", "cnn on mnist", steps)
    figures.training_curves(metrics, tmp_path / "epochs.png", "cnn on mnist")
    line = drawn["steps.png"]
    assert [x for x, _ in line] == pytest.approx([20 / 47, 40 / 47, 1, 1 + 20 / 47, 1 + 40 / 47, 2])
    assert line[2][1] == metrics[0]["train_loss"]
    assert [x for x, _ in drawn["epochs.png"]] == [1, 2]  # the train epochs' line
    assert (tmp_path / "steps.png").stat().st_size > 0 and (tmp_path / "epochs.png").is_file()


@pytest.mark.parametrize(("smoothing", "classes"), [(0.1, 10), (0.2, 10), (0.05, 47), (0.1, 2)])
def test_the_smoothing_floor_is_the_lowest_loss_torch_can_reach(smoothing, classes):
    """The floor is smoothed cross-entropy at its optimum (logits = log of the smoothed target),
    and nothing else scores lower."""
    import torch

    from cnnlab.metrics import smoothed_loss_floor

    floor = smoothed_loss_floor(smoothing, classes)
    target = torch.full((classes,), smoothing / classes)
    target[0] += 1 - smoothing
    y = torch.tensor([0])
    loss = torch.nn.functional.cross_entropy(target.log()[None], y, label_smoothing=smoothing)
    assert floor == pytest.approx(loss.item(), abs=1e-6)
    for logits in (torch.randn(64, classes), 20 * torch.eye(classes)[:1].repeat(64, 1)):
        losses = torch.nn.functional.cross_entropy(
            logits, y.repeat(64), label_smoothing=smoothing, reduction="none"
        )
        assert losses.min().item() >= floor - 1e-6
    assert smoothed_loss_floor(0.0, 10) is None and smoothed_loss_floor(0.1, 1) is None


def test_curves_draw_the_smoothing_floor_and_the_report_explains_floors_and_tta(tmp_path, monkeypatch):
    """A smoothed run's training loss sits above its test loss by design: the figures draw the
    floor it cannot pass and the comparison report says so in a sentence, as it says what a
    single read scores where the figures average shifted reads."""
    from cnnlab.reports.compare import write_report

    metrics = [
        {"epoch": e, "train_loss": 0.6, "train_acc": 0.99, "test_loss": 0.1, "test_acc": 0.99}
        for e in (1, 2)
    ]
    floors = []
    save = figures.save_figure

    def keep_then_save(fig, out, *args, **kwargs):
        floors.append(
            [line.get_ydata()[0] for line in fig.axes[0].lines if line.get_linestyle() == "--"]
        )
        return save(fig, out, *args, **kwargs)

    monkeypatch.setattr(figures, "save_figure", keep_then_save)
    figures.training_curves(metrics, tmp_path / "plain.png", "mlp")
    figures.training_curves(metrics, tmp_path / "smoothed.png", "fast", train_floor=0.5003)
    figures.comparison_curves(
        {"mlp": metrics, "cnn": metrics}, tmp_path / "both.png", {"mlp": None, "cnn": 0.5}
    )
    assert floors == [[], [pytest.approx(0.5003)], [pytest.approx(0.5)]]

    mlp, cnn = _row("mlp", 246), _row("cnn", 90)
    mlp.run_dir, cnn.run_dir = tmp_path / "mlp", tmp_path / "cnn"
    cnn.config, cnn.train_loss_floor = replace(cnn.config, label_smoothing=0.1), 0.5003
    text = write_report([mlp, cnn], tmp_path, "t").read_text()
    assert "training loss of cnn (label smoothing 0.1: never below 0.50, its dashed line)" in text
    assert "of mlp" not in text
    assert "smoothed targets" not in write_report([mlp], tmp_path, "t").read_text()
    cnn.config, cnn.test_acc_one_pass = replace(cnn.config, tta=4), 0.9945
    text = write_report([mlp, cnn], tmp_path, "t").read_text()
    assert "cnn's test figures average 4 one-pixel shifts" in text and "it scores 99.45 %" in text
    assert "mlp's test figures" not in text
