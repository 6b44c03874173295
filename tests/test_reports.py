"""Report figures and sentences a reader looks at: no overlapping text, honest percentages,
compare's settings and its summary sentence."""

from __future__ import annotations

import itertools

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
