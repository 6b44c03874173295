"""The Network page and /docs in headless Chromium against `cnnlab serve --runs DIR` with a real
MNIST CNN and MLP: a digit drawn on the Draw page shows every layer of the run, a conv layer
shows the lesson's formula with its numbers, hovering a map pixel marks its receptive field;
/docs renders with every non-loopback request blocked; no console errors, desktop and phone."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import torch

from cnnlab.explain import layer_trace
from cnnlab.runs import load_run
from cnnlab.shapes import conv2d_output
from test_lab_live import DOCS, VIEWS, open_page, runs_dir, server
from test_web_live import browser, draw_digit_with_mouse, wait_for_update

pytestmark = [pytest.mark.slow, pytest.mark.browser]
__all__ = ["browser", "runs_dir", "server"]  # the fixtures, shared


def trace_of(runs_dir, name: str):
    """The run's model and its layers (names, maps' shapes and receptive fields)."""
    run = load_run(runs_dir / name)
    return run.model, layer_trace(run.model, torch.zeros(1, *run.input_shape))


def open_network_from_draw(browser, server, errors, view):
    """Draw a 7 on the Draw page, then follow the nav bar to the Network page."""
    context, page = open_page(browser, server + "/", errors, view)
    draw_digit_with_mouse(page, 7)
    wait_for_update(page, 0)
    page.click("nav a[href='/network']")
    page.wait_for_url("**/network")
    # during the navigation the new document may have no body yet
    page.wait_for_function(
        "() => document.body?.dataset.ready === '1' && Number(document.body.dataset.updates) > 0",
        timeout=60_000,
    )
    return context, page


def hover_map_pixel(page, fy: float, fx: float) -> None:
    img = page.locator("#maps img").first
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])


@pytest.mark.parametrize("view", list(VIEWS))
def test_network_page_shows_every_layer_of_the_drawn_digit(browser, server, runs_dir, view):
    errors: list[str] = []
    context, page = open_network_from_draw(browser, server, errors, view)
    model, trace = trace_of(runs_dir, "demo/cnn")
    assert page.locator("#run").input_value() == "demo/cnn"
    names = page.eval_on_selector_all("#strip .block", "bs => bs.map((b) => b.dataset.name)")
    assert names == [t.name for t in trace]
    shapes = page.eval_on_selector_all("#strip .block .shape", "ss => ss.map((s) => s.textContent)")
    assert shapes == ["×".join(str(d) for d in t.output.shape) for t in trace]
    assert "reads 7" in page.locator("#answer").inner_text()

    # a conv layer in the middle: its formula with its own numbers
    index, conv = next((i, t) for i, t in enumerate(trace) if t.kind == "conv" and t.input_shape[0] > 1)
    page.locator(f"#strip .block[data-index='{index}']").click()
    page.wait_for_function("n => document.body.dataset.layer === n", arg=conv.name)
    m = dict(model.named_modules())[conv.name]
    want = conv2d_output(conv.input_shape[1:], m.kernel_size, m.stride, m.padding, m.dilation)
    formula = page.locator("#formula").inner_text()
    assert want.h.formula() in formula and want.w.formula() in formula
    assert page.locator("#maps img").count() == min(32, conv.output.shape[0])

    # hover a pixel: the receptive field the trace computes is marked on the input
    h, w = conv.output.shape[1:]
    hover_map_pixel(page, 0.3, 0.6)
    row, col = int(0.3 * h), int(0.6 * w)
    rows, cols = conv.field.windows((h, w))
    want_window = f"{row},{col},{rows[row][0]},{rows[row][1]},{cols[col][0]},{cols[col][1]}"
    page.wait_for_function("w => document.body.dataset.window === w", arg=want_window, timeout=10_000)
    assert page.locator("#field-box").is_visible()
    assert f"rows {rows[row][0]}–{rows[row][1]}" in page.locator("#field-note").inner_text()
    assert f"Output pixel ({row}, {col})" in page.locator("#window-note").inner_text()

    # a pool layer: its windows and their max, from the API's numbers
    page.locator("#strip .block.k-pool").first.click()
    assert page.locator("#pool-in td").count() >= 4 and page.locator("#pool-out td").count() >= 1
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWS[view]["viewport"]["width"]
    page.locator("#strip .block.k-conv").last.click()  # the deepest: a wide field, "+N more" maps
    hover_map_pixel(page, 0.4, 0.4)
    page.screenshot(path=str(DOCS / f"lab-network-{view}.png"), full_page=True)
    assert not errors, errors
    context.close()


def test_network_page_shows_an_mlps_hidden_layers_and_softmax(browser, server, runs_dir):
    errors: list[str] = []
    context, page = open_network_from_draw(browser, server, errors, "desktop")
    n = int(page.evaluate("Number(document.body.dataset.updates)"))
    page.select_option("#run", "demo/mlp")
    wait_for_update(page, n)
    _, trace = trace_of(runs_dir, "demo/mlp")
    kinds = page.eval_on_selector_all("#strip .block .kind", "ks => ks.map((k) => k.textContent)")
    assert kinds == [t.kind for t in trace] and kinds.count("linear") >= 2
    page.locator("#strip .block.k-softmax").click()
    assert page.locator("#class-bars li").count() == 10
    answer = page.locator("#answer b").inner_text()
    assert page.locator("#class-bars li.win .cls").inner_text() == answer
    page.locator("#strip .block.k-linear").first.click()  # a hidden layer: its values as bars
    assert (
        page.locator("#values").is_visible() and "numbers" in page.locator("#values-note").inner_text()
    )
    assert not errors, errors
    context.close()


def test_docs_render_with_no_internet(browser, server):
    context = browser.new_context(**VIEWS["desktop"])
    page = context.new_page()
    blocked: list[str] = []
    errors: list[str] = []

    def only_loopback(route):
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/docs")
    page.get_by_text("/api/predict", exact=True).first.wait_for(timeout=60_000)
    assert page.get_by_text("/api/explain", exact=True).first.is_visible()
    assert not blocked, blocked  # it never even asked the internet
    assert not errors, errors
    context.close()
