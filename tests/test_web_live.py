"""`cnnlab serve` as a real server on a free loopback port: raw HTTP that no client would
normalise, and the page in headless Chromium (Debian's, through Playwright's Python package)
drawn on with mouse strokes at desktop and phone sizes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from drawn import STROKES
from web_runs import mnist_web_run

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SRC = Path(__file__).resolve().parents[1] / "src"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory, real_root):
    """`cnnlab serve RUN --port 0` in a subprocess; yields its base URL ("http://127.0.0.1:N")."""
    run_dir = mnist_web_run(tmp_path_factory, real_root)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "serve", str(run_dir), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # not the checkout: serve also lists ./runs, where `make demo` may have left other runs
        cwd=tmp_path_factory.mktemp("serve-cwd"),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not any("http://" in line for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"cnnlab serve did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    url = next(line for line in lines if "http://" in line).split("http://")[1].split("/")[0]
    base = f"http://{url}"
    assert url.startswith("127.0.0.1:")  # loopback by default
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def raw_http(base: str, request: bytes, body_chunks=(), timeout: float = 20) -> tuple[int, bytes]:
    """Send bytes as they are; returns (status, body) of the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
        except OSError:  # the server answered and closed while we were still sending
            pass
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            part = s.recv(65536)
            if not part:
                break
            data += part
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=20) as r:
        return json.loads(r.read())


def test_oversize_body_is_refused_before_it_is_sent(server):
    """Headers alone announce 60 MB; the 413 comes back without a byte of the body sent."""
    status, body = raw_http(
        server,
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        b"image/png\r\nContent-Length: 60000000\r\n\r\n",
    )
    assert status == 413 and "60000000 bytes declared" in json.loads(body)["error"]
    chunk = b"\0" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 160  # 10 MB, chunked, no Content-Length
    status, body = raw_http(
        server,
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        b"image/png\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunks,
    )
    assert status == 413 and "more than 5242880 bytes sent" in json.loads(body)["error"]
    assert get_json(f"{server}/healthz")["status"] == "ok"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2fetc%2fpasswd",
        "/../../etc/passwd",
        "/static/..%5c..%5cetc%5cpasswd",
    ],
)
def test_traversal_on_the_wire(server, path):
    status, body = raw_http(server, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert status in (400, 404) and b"root:" not in body
    assert get_json(f"{server}/healthz")["status"] == "ok"


# ----------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install chromium` (make test does, as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in [dev])")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def draw_digit_with_mouse(page, digit: int) -> None:
    """Mouse strokes of tests/drawn.py's digit inside the middle of the pad."""
    box = page.locator("#pad").bounding_box()
    x0, y0 = box["x"] + 0.25 * box["width"], box["y"] + 0.12 * box["height"]
    w, h = 0.5 * box["width"], 0.76 * box["height"]
    for line in STROKES[digit]:
        pts = [(x0 + px * w, y0 + py * h) for px, py in line]
        page.mouse.move(*pts[0])
        page.mouse.down()
        for x, y in pts[1:]:
            page.mouse.move(x, y, steps=4)
        page.mouse.up()


def draw_digit_with_touch(cdp, page, digit: int) -> None:
    """The digit's strokes as touch events (Chrome DevTools Protocol: Playwright's own
    touchscreen only taps)."""
    box = page.locator("#pad").bounding_box()
    x0, y0 = box["x"] + 0.25 * box["width"], box["y"] + 0.12 * box["height"]
    w, h = 0.5 * box["width"], 0.76 * box["height"]
    for line in STROKES[digit]:
        pts = [(x0 + px * w, y0 + py * h) for px, py in line]
        dense = [
            (ax + (bx - ax) * t / 4, ay + (by - ay) * t / 4)
            for (ax, ay), (bx, by) in zip(pts, pts[1:], strict=False)
            for t in range(4)
        ]
        dense.append(pts[-1])
        for i, (x, y) in enumerate(dense):
            kind = "touchStart" if i == 0 else "touchMove"
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def wait_for_update(page, after: int) -> int:
    """Wait until the page has rendered an answer newer than `after` and nothing is pending."""
    page.wait_for_function(
        "n => Number(document.body.dataset.updates || 0) > n", arg=after, timeout=30_000
    )
    page.wait_for_timeout(400)  # a request still queued behind the last one
    return int(page.evaluate("Number(document.body.dataset.updates || 0)"))


def preview_ink(page) -> float:
    """The brightest pixel of the 28x28 preview, read back from the <img> the page shows."""
    return page.evaluate("""() => {
        const img = document.getElementById('input');
        if (img.hidden || !img.complete || img.naturalWidth !== 28) return -1;
        const c = document.createElement('canvas'); c.width = 28; c.height = 28;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, 28, 28).data;
        let m = 0; for (let i = 0; i < d.length; i += 4) m = Math.max(m, d[i]);
        return m; }""")


def check_answer(page) -> str:
    label = page.locator("#label").inner_text()
    assert label in [str(i) for i in range(10)]
    assert page.locator("#bars li").count() == 10
    assert page.locator("#bars li.win").count() == 1
    assert page.locator("#bars li.win").get_attribute("data-cls") == label
    widths = page.eval_on_selector_all("#bars .fill", "els => els.map(e => parseFloat(e.style.width))")
    assert len(widths) == 10 and abs(sum(widths) - 100) < 1.5 and max(widths) > 30
    assert preview_ink(page) > 200  # not blank: white ink on black, as the model sees it
    assert page.locator("#maps img").count() == 16  # the cnn's first conv: 16 channels
    assert page.locator("#error").is_hidden()
    return label


def open_page(browser, server, errors: list, **context_args):
    context = browser.new_context(**context_args)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server + "/")
    page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=30_000)
    return context, page


@pytest.mark.browser
def test_draw_a_digit_on_the_desktop(browser, server, tmp_path):
    errors: list[str] = []
    context, page = open_page(browser, server, errors, viewport={"width": 1280, "height": 860})
    assert "cnn" in page.locator("#card-model").inner_text()
    assert "%" in page.locator("#card-accuracy").inner_text()
    draw_digit_with_mouse(page, 7)
    n = wait_for_update(page, 0)
    label = check_answer(page)
    assert label == "7"  # a clear 7 (measured: 97 % sure)
    page.screenshot(path=str(tmp_path / "web-desktop.png"), full_page=True)

    page.mouse.move(*_pad_point(page, 0.1, 0.9))  # a stray stroke, then undo it
    page.mouse.down()
    page.mouse.move(*_pad_point(page, 0.3, 0.95), steps=5)
    page.mouse.up()
    n = wait_for_update(page, n)
    page.click("#undo")
    n = wait_for_update(page, n)
    assert page.locator("#label").inner_text() == label

    page.click("#clear")  # a blank pad asks for a digit and shows no answer
    page.wait_for_function("() => document.getElementById('label').textContent === '?'")
    assert page.locator("#bars li.win").count() == 0 and page.locator("#input").is_hidden()
    assert not errors, errors
    context.close()


@pytest.mark.browser
def test_server_errors_are_shown_in_the_page(browser, server, tmp_path):
    errors: list[str] = []
    context, page = open_page(browser, server, errors, viewport={"width": 1000, "height": 800})
    notes = tmp_path / "notes.png"
    notes.write_text("this is not an image\n")
    page.set_input_files("#upload", str(notes))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    message = page.locator("#error").inner_text()
    assert "415" in message and "notes.png: not an image" in message
    page.screenshot(path=str(tmp_path / "web-error.png"))
    page.click("#clear")
    draw_digit_with_mouse(page, 1)
    wait_for_update(page, 0)
    assert page.locator("#error").is_hidden()  # a good answer clears the error
    assert page.locator("#label").inner_text() == "1"
    good = tmp_path / "three.png"
    from drawn import draw_digit

    draw_digit(3, width=14).save(good)
    n = int(page.evaluate("Number(document.body.dataset.updates)"))
    page.set_input_files("#upload", str(good))  # an upload replaces the drawing
    wait_for_update(page, n)
    assert page.locator("#label").inner_text() == "3"
    context.close()
    assert all("415" in e or "Unsupported" in e for e in errors), errors  # only the refused upload


@pytest.mark.browser
def test_draw_on_a_phone_sized_screen(browser, server, tmp_path):
    errors: list[str] = []
    context, page = open_page(
        browser,
        server,
        errors,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px wide)"
    pad = page.locator("#pad").bounding_box()
    assert pad["width"] >= 300  # the pad fills the screen's width
    draw_digit_with_mouse(page, 3)
    wait_for_update(page, 0)
    assert check_answer(page) == "3"
    page.screenshot(path=str(tmp_path / "web-phone.png"), full_page=True)

    page.click("#clear")  # now a finger: touch events, which the page gets as pointer events
    page.wait_for_function("() => document.getElementById('label').textContent === '?'")
    n = int(page.evaluate("Number(document.body.dataset.updates)"))
    scroll = page.evaluate("window.scrollY")
    draw_digit_with_touch(context.new_cdp_session(page), page, 1)
    wait_for_update(page, n)
    assert page.locator("#label").inner_text() == "1"
    assert page.evaluate("window.scrollY") == scroll  # drawing does not scroll the page
    assert not errors, errors
    context.close()


def _pad_point(page, fx: float, fy: float) -> tuple[float, float]:
    box = page.locator("#pad").bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]
