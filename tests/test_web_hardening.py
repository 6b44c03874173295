"""The web app against a hostile client: uploads that cost memory, other pages posting to it, a
Host it does not answer to (DNS rebinding), bodies refused or stalled, and a server kept busy.
The in-process checks use FastAPI's TestClient; the wire checks a real `cnnlab serve`."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

import cnnlab.web.routes_predict as web_app
from cnnlab.data.images import MAX_PIXELS, open_image
from cnnlab.errors import ConfigError
from cnnlab.web.app import create_app
from cnnlab.web.limits import ServerBusy, WorkLimiter
from cnnlab.web.middleware import BodyLimitMiddleware, hosts_for_bind
from drawn import draw_digit, encode
from web_runs import fake_web_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
LOCAL = "http://127.0.0.1"
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return fake_web_run(tmp_path_factory)


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app(run_dir), base_url=LOCAL) as c:
        yield c


def digit_png(d: int = 7) -> bytes:
    return encode(draw_digit(d))


def lines_png(side: int, mode: str = "RGBA") -> bytes:
    """A side x side image of a few black lines on white: tiny as a PNG, large decoded."""
    img = Image.new(mode, (side, side), "white")
    draw = ImageDraw.Draw(img)
    for i in range(8):
        draw.line([(0, i * side // 8), (side - 1, side - 1 - i * side // 8)], fill="black", width=9)
    buf = io.BytesIO()
    img.save(buf, format="PNG" if mode != "RGB" else "JPEG")
    return buf.getvalue()


def post_png(client, data: bytes, endpoint: str = "/api/predict", **headers):
    return client.post(endpoint, files={"file": ("x.png", data, "image/png")}, headers=headers)


# ----------------------------------------------------------------------------- memory per request


@pytest.mark.parametrize("endpoint", ["/api/predict", "/api/explain"])
def test_an_image_over_the_web_pixel_budget_is_refused_from_its_header(client, endpoint):
    bomb = lines_png(4096)
    assert len(bomb) < 200_000
    r = post_png(client, bomb, endpoint)
    assert r.status_code == 422 and r.headers["content-type"] == "application/json"
    assert "4096x4096 pixels is over the limit of 4194304 (2048x2048)" in r.json()["error"]
    # files on disk keep the larger cap and its message
    assert open_image(bomb).size == (4096, 4096) and MAX_PIXELS == 4096 * 4096


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_instead(client):
    photo = lines_png(4000, "RGB")  # a phone photo's size, as a JPEG
    img = open_image(photo, max_pixels=2048 * 2048)
    assert img.size == (2000, 2000)  # JPEG's own 1/2-scale decoding
    r = post_png(client, photo)
    assert r.status_code == 200, r.text
    assert r.json()["label"] in [str(i) for i in range(10)]


def test_a_busy_server_answers_503_json_with_retry_after(run_dir, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    decode = web_app.open_image

    def slow_decode(*args, **kwargs):  # the first request holds the only slot until released
        if not entered.is_set():
            entered.set()
            release.wait(30)
        return decode(*args, **kwargs)

    monkeypatch.setattr(web_app, "open_image", slow_decode)
    app = create_app(run_dir, max_in_flight=1, busy_wait_s=0.2)
    with TestClient(app, base_url=LOCAL) as c:
        first: list = []
        t = threading.Thread(target=lambda: first.append(post_png(c, digit_png(3))))
        t.start()
        assert entered.wait(30)
        r = post_png(c, digit_png(4))
        release.set()
        t.join(30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"].startswith("server busy:") and "retry in a moment" in r.json()["error"]
        assert first[0].status_code == 200  # the request that held the slot was served
        assert post_png(c, digit_png(5)).status_code == 200  # and the slot was given back


def test_work_limiter_queues_calls_then_refuses_when_saturated():
    async def queued():  # 6 calls through 2 slots: all served, in turn
        limiter = WorkLimiter(2, wait_s=30)
        return await asyncio.gather(*(limiter.run(time.sleep, 0.02) for _ in range(6)))

    assert asyncio.run(queued()) == [None] * 6

    async def saturated():
        limiter = WorkLimiter(2, wait_s=0.1)
        release = threading.Event()
        holders = [asyncio.create_task(limiter.run(release.wait, 30)) for _ in range(2)]
        await asyncio.sleep(0.05)  # both slots taken
        try:
            with pytest.raises(ServerBusy, match="2 images already being processed"):
                await limiter.run(time.sleep, 0)
        finally:
            release.set()
        assert await asyncio.gather(*holders) == [True, True]
        assert await limiter.run(lambda: "free again") == "free again"

    asyncio.run(saturated())
    with pytest.raises(ConfigError, match="work limit"):
        WorkLimiter(0)


# ----------------------------------------------------------------------------- Origin and Host


def test_a_post_from_another_origin_is_refused(client):
    for origin in ["http://evil.example", "null", "http://127.0.0.1:9999", "https://127.0.0.1"]:
        r = post_png(client, digit_png(), origin=origin)
        assert r.status_code == 403, origin
        assert r.json()["error"].startswith(f"cross-origin request from {origin!r} refused")
    # the page's own origin, and no Origin at all (curl, scripts), are served
    assert post_png(client, digit_png(), origin="http://127.0.0.1").status_code == 200
    assert post_png(client, digit_png()).status_code == 200


def test_only_expected_host_names_are_served(run_dir):
    app = create_app(run_dir, allowed_hosts=["lab.example"])
    with TestClient(app, base_url=LOCAL) as c:
        for host in ["localhost:8000", "127.0.0.1:1", "[::1]:8000", "LAB.example:80", "lab.example"]:
            assert c.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in ["evil.example", "evil.example:8000", "10.1.2.3", "localhost:x", "127.0.0.1.nip.io"]:
            r = c.get("/api/model", headers={"host": host})
            assert r.status_code == 403 and f"Host {host!r} is not served here" in r.json()["error"]
        # a rebinding page's own origin matches its Host, but the Host is refused first
        r = c.post("/api/predict", headers={"host": "evil.example", "origin": "http://evil.example"})
        assert r.status_code == 403
    with TestClient(create_app(run_dir, any_ip_host=True), base_url=LOCAL) as c:
        assert c.get("/healthz", headers={"host": "10.1.2.3:8000"}).status_code == 200
        assert c.get("/healthz", headers={"host": "evil.example"}).status_code == 403


def test_hosts_for_bind():
    assert hosts_for_bind("127.0.0.1") == (["127.0.0.1"], False)
    assert hosts_for_bind("lab.local", ["x.example"]) == (["lab.local", "x.example"], False)
    names, any_ip = hosts_for_bind("0.0.0.0")
    assert any_ip and "0.0.0.0" in names and len(names) == 3  # plus the machine's own names
    assert hosts_for_bind("::")[1]


# ----------------------------------------------------------------------------- bodies, HEAD


def test_head_answers_for_the_page_and_static_files(client):
    for path in ["/", "/static/app.js", "/static/style.css"]:
        r = client.head(path)
        assert r.status_code == 200 and r.content == b"", path
        assert r.headers["content-length"] == str(len(client.get(path).content))
    assert client.head("/static/nothing.js").status_code == 404


def run_stalling(app, chunks: list[bytes], stall_s: float = 3600) -> tuple[int, dict]:
    """Call an ASGI app with a body that stops after `chunks` (more_body stays True)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/predict",
        "raw_path": b"/api/predict",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "headers": [(b"content-type", b"image/png")],
    }
    parts = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    sent = []

    async def receive():
        if parts:
            return parts.pop(0)
        await asyncio.sleep(stall_s)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if "body" in m))


def test_a_body_that_stalls_gets_408(run_dir):
    app = create_app(run_dir, body_read_timeout_s=0.2)
    status, body = run_stalling(app, [b"\x89PNG\r\n", b"\x1a\n"])
    assert status == 408 and "nothing more received for 0.2 s" in body["error"]
    assert BodyLimitMiddleware(app).read_timeout_s == 10  # the default


# ----------------------------------------------------------------------------- on the wire


@pytest.fixture(scope="module")
def server(run_dir):
    """`cnnlab serve RUN --port 0 --allow-host lab.example` in a subprocess; yields its URL."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    cmd = [
        sys.executable,
        "-m",
        "cnnlab",
        "serve",
        str(run_dir),
        "--port",
        "0",
        "--quiet",
        "--allow-host",
        "lab.example",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # "cnnlab: serving RUN on http://127.0.0.1:PORT/ ..."
        if "http://" not in line:
            pytest.fail(f"cnnlab serve did not start: {line}{proc.stderr.read()}")
        yield "http://" + line.split("http://")[1].split("/")[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def post_urllib(url: str, data) -> tuple[int, dict]:
    """POST with the standard library, which sends the whole body before reading an answer."""
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("mb", [6, 30])
@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversize_upload_gets_a_413_the_client_can_read(server, mb, chunked):
    """Not a connection reset while the client is still sending: the rest is read and dropped."""
    body = b"\0" * (mb * 1024 * 1024)
    data = (body[i : i + 2**18] for i in range(0, len(body), 2**18)) if chunked else body
    status, answer = post_urllib(f"{server}/api/predict", data)
    assert status == 413
    assert ("more than 5242880 bytes sent" if chunked else f"{len(body)} bytes declared") in answer[
        "error"
    ]
    with httpx.Client(timeout=30) as c:
        r = c.post(f"{server}/api/predict", files={"file": ("big.png", body, "image/png")})
        assert r.status_code == 413 and "bytes declared" in r.json()["error"]
        assert c.get(f"{server}/healthz").json()["status"] == "ok"


def test_serve_answers_its_allowed_hosts_and_head_on_the_wire(server):
    with httpx.Client(timeout=30) as c:
        assert c.get(f"{server}/healthz", headers={"host": "lab.example:8000"}).status_code == 200
        r = c.get(f"{server}/healthz", headers={"host": "evil.example:8000"})
        assert r.status_code == 403 and "evil.example" in r.json()["error"]
        r = c.post(
            f"{server}/api/predict",
            files={"file": ("7.png", digit_png(), "image/png")},
            headers={"origin": "http://evil.example"},
        )
        assert r.status_code == 403
        assert c.head(f"{server}/").status_code == 200


def test_flatten_alpha_skips_compositing_only_when_it_would_change_nothing():
    from cnnlab.data.images import flatten_alpha

    opaque = Image.new("RGBA", (40, 30), (10, 200, 30, 255))
    ImageDraw.Draw(opaque).line([(0, 0), (39, 29)], fill=(0, 0, 0, 255), width=3)
    assert flatten_alpha(opaque).tobytes() == opaque.convert("RGB").tobytes()
    half = opaque.copy()
    half.putalpha(128)
    white = Image.new("RGBA", half.size, (255, 255, 255, 255))
    want = Image.alpha_composite(white, half).convert("RGB")
    assert flatten_alpha(half).tobytes() == want.tobytes()
