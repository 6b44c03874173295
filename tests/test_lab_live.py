"""The lab's pages in headless Chromium against `cnnlab serve --runs DIR` with a real MNIST MLP
and CNN: both runs read one drawing, the shift slider loses the MLP first, the Shapes widget
says what `cnnlab shapes conv` says; no console errors, desktop and phone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from cnnlab.cli import main as cli_main
from test_web_live import CHROMIUM, CHROMIUM_ARGS, SRC, browser, draw_digit_with_mouse, wait_for_update
from web_runs import mnist_web_run

pytestmark = [pytest.mark.slow, pytest.mark.browser]
__all__ = ["browser"]  # the fixture, shared
# Screenshots land in docs/ only when asked (`make screenshots`), so `make test` leaves git clean
DOCS = Path(os.environ.get("CNNLAB_SCREENSHOTS") or Path(tempfile.gettempdir()) / "cnnlab-screenshots")
DOCS.mkdir(parents=True, exist_ok=True)
VIEWS = {
    "desktop": dict(viewport={"width": 1280, "height": 900}),
    "phone": dict(
        viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True, has_touch=True
    ),
}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, real_root):
    """demo/cnn (the web tests' MNIST cnn) and demo/mlp (an MLP on the first 5000 images)."""
    root = tmp_path_factory.mktemp("lab-live")
    (root / "demo").mkdir()
    shutil.copytree(mnist_web_run(tmp_path_factory, real_root), root / "demo" / "cnn")
    code = cli_main(
        [
            "train",
            "--recipe",
            "lesson-mlp",
            "--root",
            str(real_root),
            "--train-subset",
            "5000",
            "--test-subset",
            "2000",
            "--threads",
            "1",
            "--quiet",
            "--out",
            str(root / "demo" / "mlp"),
        ]
    )
    assert code == 0
    return root


@pytest.fixture(scope="module")
def server(runs_dir):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "serve", "--runs", str(runs_dir), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + 120
    while not any("http://" in ln for ln in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("cnnlab serve did not start")
        time.sleep(0.1)
    yield "http://" + next(ln for ln in lines if "http://" in ln).split("http://")[1].split("/")[0]
    proc.terminate()
    proc.wait(timeout=20)


def open_page(browser, url, errors, view):
    context = browser.new_context(**VIEWS[view])
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=60_000)
    return context, page


def first_lost_shift(page) -> dict[str, int]:
    """Move the digit right one pixel at a time; the first shift at which each run's answer changes."""
    labels = {"a": page.locator("#label").inner_text(), "b": page.locator("#label-b").inner_text()}
    lost: dict[str, int] = {}
    n = int(page.evaluate("Number(document.body.dataset.updates)"))
    for dx in range(1, 15):
        page.locator("#dx").fill(str(dx))
        n = wait_for_update(page, n)
        for key, sel in (("a", "#label"), ("b", "#label-b")):
            if key not in lost and page.locator(sel).inner_text() != labels[key]:
                lost[key] = dx
    return lost


@pytest.mark.parametrize("view", list(VIEWS))
def test_draw_page_two_runs_shift_and_nudge(browser, server, view):
    errors: list[str] = []
    context, page = open_page(browser, server + "/", errors, view)
    assert page.locator("#run-a").input_value() == "demo/mlp"
    assert page.locator("#run-b").input_value() == "demo/cnn"
    draw_digit_with_mouse(page, 7)
    wait_for_update(page, 0)
    assert page.locator("#label").inner_text() == "7" and page.locator("#label-b").inner_text() == "7"
    assert page.locator("#bars li.win").count() == 1 and page.locator("#bars-b li.win").count() == 1
    assert page.locator("#input").is_visible() and page.locator("#input-b").is_visible()
    page.wait_for_function("() => document.body.dataset.shiftReady === '1'", timeout=120_000)
    page.click("#nudge")
    page.wait_for_function("() => document.body.dataset.nudged === '1'", timeout=60_000)
    assert "turns demo/mlp's 7 into" in page.locator("#nudge-result").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWS[view]["viewport"]["width"]
    page.screenshot(path=str(DOCS / f"lab-draw-{view}.png"), full_page=True)
    if view == "desktop":
        lost = first_lost_shift(page)
        assert "a" in lost and lost["a"] < lost.get("b", 99), lost  # the MLP loses the 7 first
    assert not errors, errors
    context.close()


@pytest.mark.parametrize("view", list(VIEWS))
def test_shapes_widget_says_what_cnnlab_shapes_says(browser, server, view, capsys):
    errors: list[str] = []
    context, page = open_page(browser, server + "/shapes", errors, view)
    n = int(page.evaluate("Number(document.body.dataset.updates)"))
    page.fill("#in-size", "28,20")
    page.fill("#kernel", "5,3")
    page.fill("#stride", "2")
    page.fill("#padding", "1")
    page.wait_for_function("n => Number(document.body.dataset.updates) > n", arg=n, timeout=30_000)
    page.wait_for_timeout(500)
    assert (
        cli_main(
            [
                "shapes",
                "conv",
                "--input",
                "28",
                "20",
                "--kernel",
                "5",
                "3",
                "--stride",
                "2",
                "--padding",
                "1",
                "--json",
            ]
        )
        == 0
    )
    want = json.loads(capsys.readouterr().out)
    assert page.locator("#output").inner_text() == f"{want['output'][0]}×{want['output'][1]}"
    formula = page.locator("#formula").inner_text()
    assert want["axes"]["h"]["formula"] in formula and want["axes"]["w"]["formula"] in formula
    assert page.locator("#code").inner_text().startswith("nn.Conv2d(1, 8, kernel_size=(5, 3), stride=2")
    page.fill("#stride", "0")  # PyTorch would raise: the page shows the server's 400
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "stride" in page.locator("#error").inner_text()
    page.fill("#stride", "1")
    page.wait_for_selector("#error", state="hidden", timeout=30_000)
    page.screenshot(path=str(DOCS / f"lab-shapes-{view}.png"), full_page=True)
    context.close()
    assert all("400" in e for e in errors), errors  # only the refused stride


def test_chromium_is_there():
    assert Path(CHROMIUM).exists() and CHROMIUM_ARGS
