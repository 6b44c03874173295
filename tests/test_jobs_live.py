"""The Train and Runs pages in headless Chromium against a real `cnnlab serve --runs DIR`: a
`fast` job started from the page grows its curve and finishes; its run opens in Runs, the
confusion cell with the most errors shows its images most confident first; a running job is
cancelled and resumed; two runs compared. Screenshots at desktop and phone size."""

from __future__ import annotations

import json
import shutil

import pytest

from test_lab_live import DOCS, VIEWS, open_page, server
from test_web_live import browser
from web_runs import mnist_web_run

pytestmark = [pytest.mark.slow, pytest.mark.browser]
__all__ = ["browser", "server"]  # the fixtures, shared
JOB_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, real_root):
    """demo/cnn: the web tests' MNIST cnn (the server needs one run to start)."""
    root = tmp_path_factory.mktemp("jobs-live")
    shutil.copytree(mnist_web_run(tmp_path_factory, real_root), root / "demo" / "cnn")
    return root


def start_job(page, recipe: str, name: str, epochs: int, subset: int, batch: int | None = None) -> None:
    page.select_option("#recipe", recipe)
    page.fill("#epochs", str(epochs))
    page.fill("#train_subset", str(subset))
    page.fill("#batch_size", str(batch) if batch else "")
    page.fill("#name", name)
    page.click("#start")
    page.wait_for_function(
        f"() => document.querySelector('#job-run').textContent === {json.dumps(name)}"
    )


def wait_state(page, state: str) -> None:
    page.wait_for_function(
        f"() => document.body.dataset.jobState === {json.dumps(state)}", timeout=JOB_TIMEOUT_MS
    )


def test_train_a_fast_job_then_open_it_in_runs(browser, server, runs_dir):
    errors: list[str] = []
    context, page = open_page(browser, server + "/train", errors, "desktop")
    start_job(page, "fast", "page-fast", epochs=3, subset=2000, batch=64)
    page.wait_for_function("() => Number(document.body.dataset.steps) >= 1", timeout=JOB_TIMEOUT_MS)
    first = page.evaluate("document.querySelector('#live-loss').toDataURL()")
    steps = int(page.evaluate("Number(document.body.dataset.steps)"))
    page.wait_for_function(
        "n => Number(document.body.dataset.steps) > n", arg=steps, timeout=JOB_TIMEOUT_MS
    )
    assert page.evaluate("document.querySelector('#live-loss').toDataURL()") != first  # it grew
    wait_state(page, "done")
    assert page.locator("#job-epoch").inner_text().startswith("3/3")
    assert page.locator("#open-run").is_visible()
    assert "train's floor 0.50" in page.locator("#live-loss").get_attribute("aria-label")
    page.screenshot(path=str(DOCS / "lab-train-desktop.png"), full_page=True)
    page.click("#open-run")
    page.wait_for_function("() => document.body.dataset.shown === 'page-fast'", timeout=120_000)
    assert page.locator("#runs-table tbody tr[data-run='page-fast']").count() == 1
    loss_chart = page.locator("#detail-loss").get_attribute("aria-label")
    assert "train loss (steps)" in loss_chart and "train's floor 0.50 (label smoothing)" in loss_chart
    cells = page.locator("#detail-cm button.cm-cell")
    counts = [
        (int(c["n"]), c["t"], c["p"])
        for c in cells.evaluate_all(
            "els => els.map(e => ({n: e.textContent, t: e.dataset.true, p: e.dataset.pred}))"
        )
        if c["t"] != c["p"]
    ]
    n, t, p = max(counts)
    assert n > 0
    page.locator(f"#detail-cm button.cm-cell[data-true='{t}'][data-pred='{p}']").click()
    page.wait_for_function(f"() => document.body.dataset.cell === '{t},{p}'", timeout=60_000)
    shown = page.locator("#cell-images figure").evaluate_all(
        "els => els.map(e => Number(e.dataset.confidence))"
    )
    assert len(shown) == min(n, 24)
    assert shown == sorted(shown, reverse=True)
    assert page.locator("#cell-images figure img").count() == 2 * len(shown)  # image and saliency
    page.screenshot(path=str(DOCS / "lab-runs-desktop.png"), full_page=True)
    assert not errors, errors
    context.close()


def test_cancel_a_running_job_and_resume_it(browser, server, runs_dir):
    errors: list[str] = []
    context, page = open_page(browser, server + "/train", errors, "desktop")
    start_job(page, "lesson-mlp", "page-mlp", epochs=3, subset=15000, batch=16)  # ~1.5 s epochs
    page.wait_for_function(
        "() => document.querySelector('#job-epoch').textContent.startsWith('1/')", timeout=JOB_TIMEOUT_MS
    )
    page.click("#cancel")
    wait_state(page, "cancelled")
    saved = json.loads((runs_dir / "page-mlp" / "metrics.json").read_text())
    assert 1 <= len(saved) < 3
    assert page.locator("#resume").is_visible()
    page.wait_for_selector("#resumable li:has-text('page-mlp')")
    page.click("#resume")
    page.wait_for_function("() => document.body.dataset.jobState === 'running'")
    wait_state(page, "done")
    assert len(json.loads((runs_dir / "page-mlp" / "metrics.json").read_text())) == 3
    assert not errors, errors
    context.close()


def test_compare_two_runs(browser, server, runs_dir):
    errors: list[str] = []
    context, page = open_page(browser, server + "/runs", errors, "desktop")
    names = page.locator("#runs-table tbody tr").evaluate_all("els => els.map(e => e.dataset.run)")
    assert {"demo/cnn", "page-fast"} <= set(names)
    for name in ("demo/cnn", "page-fast"):
        page.locator(f"#runs-table tbody tr[data-run='{name}'] input").check()
    page.click("#compare")
    page.wait_for_function("() => (document.body.dataset.shown || '').includes(',')", timeout=120_000)
    assert (
        page.locator("#cm-a .cm-cell").count() == 100
        and page.locator("#cm-diff .cm-cell").count() == 100
    )
    differs = page.locator("#compare-config tr.differs th").all_inner_texts()
    assert "model" in differs and "seed" not in differs
    assert not errors, errors
    context.close()


@pytest.mark.parametrize("page_name", ["train", "runs"])
def test_phone_layout(browser, server, runs_dir, page_name):
    errors: list[str] = []
    path = "/train" if page_name == "train" else "/runs#run=page-fast"
    context, page = open_page(browser, server + path, errors, "phone")
    if page_name == "runs":
        page.wait_for_function("() => document.body.dataset.shown === 'page-fast'", timeout=120_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWS["phone"]["viewport"]["width"]
    page.screenshot(path=str(DOCS / f"lab-{page_name}-phone.png"), full_page=True)
    assert not errors, errors
    context.close()
