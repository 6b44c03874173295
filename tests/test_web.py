"""The web app's REST API through FastAPI's TestClient: answers equal the library's, every bad
input gets the right 4xx JSON, and the app keeps serving afterwards."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import threading

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.cli import main as cli_main
from cnnlab.explain import conv_and_pool_layers, feature_maps
from cnnlab.models import count_parameters
from cnnlab.predict import Predictor
from cnnlab.preprocess import to_model_input
from cnnlab.runs import load_run
from cnnlab.web.app import create_app
from cnnlab.web.middleware import BodyLimitMiddleware
from cnnlab.web.payload import WHITE_QUANTILE
from drawn import draw_digit, encode
from web_runs import fake_web_run, forged_png, mnist_web_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
LOCAL = "http://127.0.0.1"  # TestClient's default Host, "testserver", is not one the app answers to


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return fake_web_run(tmp_path_factory)


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app(run_dir), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="module")
def predictor(run_dir):
    return Predictor(load_run(run_dir))


def digit_png(d: int = 7, **kw) -> bytes:
    return encode(draw_digit(d, **kw))


def decode_data_url(url: str) -> Image.Image:
    head, _, data = url.partition(",")
    assert head == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def assert_serving(client) -> None:
    """The app still answers health checks and predictions."""
    assert client.get("/healthz").json()["status"] == "ok"
    r = client.post("/api/predict", files={"file": ("ok.png", digit_png(3), "image/png")})
    assert r.status_code == 200 and r.json()["label"]


# ----------------------------------------------------------------------------- answers


def test_health_and_model_card(client, run_dir):
    assert client.get("/healthz").json() == {"status": "ok", "model": "cnn"}
    card = client.get("/api/model").json()
    run = load_run(run_dir)
    assert card["model"] == "cnn" and card["dataset"] == "fake" and card["run"] == run_dir.name
    assert card["classes"] == [str(i) for i in range(10)] and card["input_shape"] == [1, 28, 28]
    assert card["parameters"] == count_parameters(run.model)
    assert card["test_accuracy"] == run.metrics[-1]["test_acc"] and card["epochs"] == 1
    convs = [ly.name for ly in conv_and_pool_layers(run.model) if ly.kind == "conv"]
    assert card["conv_layers"] == convs


def test_predict_answers_what_the_predictor_answers(client, predictor):
    png = digit_png(7)
    r = client.post("/api/predict", files={"file": ("seven.png", png, "image/png")})
    assert r.status_code == 200, r.text
    got = r.json()
    (want,) = predictor.predict([png], top=10)
    assert got["label"] == want.label and got["probability"] == pytest.approx(want.probability, abs=1e-6)
    assert [t["class"] for t in got["top"]] == [c for c, _ in want.top[:3]]  # top=3 by default
    assert list(got["probabilities"]) == list(predictor.classes)
    assert sum(got["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    for c, p in want.top:
        assert got["probabilities"][c] == pytest.approx(p, abs=1e-6)
    seen = np.asarray(decode_data_url(got["input"]))
    assert seen.shape == (28, 28) and np.array_equal(seen, want.input[0].numpy())
    assert got["inverted"] is True  # black ink on white paper


def test_every_way_of_sending_an_image_gives_the_same_answer(client):
    png = digit_png(4)
    b64 = base64.b64encode(png).decode()
    answers = [
        client.post("/api/predict", files={"file": ("4.png", png, "image/png")}),
        client.post("/api/predict", json={"image": b64}),
        client.post("/api/predict", json={"image": f"data:image/png;base64,{b64}"}),
        # the declared type is ignored: the bytes decide
        client.post("/api/predict", json={"image": f"data:image/jpeg;base64,{b64}"}),
        client.post("/api/predict", content=png, headers={"content-type": "image/png"}),
    ]
    assert [a.status_code for a in answers] == [200] * 5
    first = answers[0].json()
    for a in answers[1:]:
        assert a.json() == first


def test_top_parameter(client):
    png = digit_png(1)
    assert (
        len(
            client.post("/api/predict?top=5", json={"image": base64.b64encode(png).decode()}).json()[
                "top"
            ]
        )
        == 5
    )
    assert (
        len(
            client.post(
                "/api/predict?top=99", content=png, headers={"content-type": "image/png"}
            ).json()["top"]
        )
        == 10
    )


def test_explain_gives_the_first_conv_layers_maps(client, predictor):
    png = digit_png(2)
    r = client.post("/api/explain", files={"file": ("2.png", png, "image/png")})
    assert r.status_code == 200, r.text
    got = r.json()
    (pred,) = predictor.predict([png], top=10)
    assert got["prediction"]["label"] == pred.label and got["note"] is None
    (layer,) = got["layers"]
    first = next(ly for ly in conv_and_pool_layers(predictor.model) if ly.kind == "conv")
    assert layer["name"] == first.name and layer["kind"] == "conv"
    assert layer["description"] == first.description
    maps = feature_maps(
        predictor.model, to_model_input(pred.input, predictor.mean, predictor.std), [first.name]
    )[first.name][0]  # (C, h, w)
    assert layer["shape"] == list(maps.shape) and len(layer["maps"]) == maps.shape[0]
    lo, hi = layer["range"]
    white = float(torch.quantile(maps.flatten(), WHITE_QUANTILE))  # a few hot pixels clip
    assert lo == pytest.approx(float(maps.min()), abs=1e-5) and hi == pytest.approx(white, rel=1e-5)
    for url, m in zip(layer["maps"], maps, strict=True):  # one brightness scale for the layer
        img = np.asarray(decode_data_url(url), dtype=np.float32)
        assert img.shape == tuple(m.shape)
        expected = ((m - lo) / (hi - lo) * 255).clamp(0, 255).numpy()
        assert np.abs(img - expected).max() <= 0.51


def test_explain_all_layers(client, predictor):
    png = digit_png(5)
    r = client.post("/api/explain?layers=all", content=png, headers={"content-type": "image/png"})
    names = [ly["name"] for ly in r.json()["layers"]]
    assert names == [ly.name for ly in conv_and_pool_layers(predictor.model)]
    assert any(ly["kind"] == "pool" for ly in r.json()["layers"])
    assert client.post("/api/explain?layers=some", content=b"x").status_code == 422


def test_explain_an_mlp_says_why_there_are_no_maps(tmp_path_factory):
    with TestClient(create_app(fake_web_run(tmp_path_factory, "mlp")), base_url=LOCAL) as c:
        got = c.post("/api/explain", files={"file": ("7.png", digit_png(7), "image/png")}).json()
        assert got["layers"] == [] and "no convolution layers" in got["note"]
        assert got["prediction"]["label"] in [str(i) for i in range(10)]
        assert c.get("/api/model").json()["conv_layers"] == []


def test_openapi_documents_the_api(client):
    doc = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/explain", "/api/model", "/healthz"} <= set(doc["paths"])
    body = doc["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert "file" in body["multipart/form-data"]["schema"]["properties"]
    assert "image" in body["application/json"]["schema"]["properties"]
    assert client.get("/docs").status_code == 200


# ----------------------------------------------------------------------------- bad inputs

TRUNCATED = digit_png(8)[:300]
BAD_INPUTS = {
    # name: (request keyword arguments, status, words the message must contain)
    "empty body": (dict(content=b""), 400, "empty request body"),
    "empty JSON body": (dict(content=b"", headers={"content-type": "application/json"}), 400, "empty"),
    "empty upload": (dict(files={"file": ("e.png", b"", "image/png")}), 400, "e.png: empty"),
    "text file": (
        dict(files={"file": ("notes.png", b"just some text\n" * 20, "image/png")}),
        415,
        "notes.png: not an image",
    ),
    "text as image/png body": (
        dict(content=b"hello", headers={"content-type": "image/png"}),
        415,
        "not an image",
    ),
    "truncated PNG": (dict(files={"file": ("cut.png", TRUNCATED, "image/png")}), 422, "truncated"),
    "20000x20000 PNG bomb": (
        dict(files={"file": ("bomb.png", forged_png(20000, 20000), "image/png")}),
        422,
        "2048x2048 pixels",
    ),
    "bomb as base64": (
        dict(json={"image": base64.b64encode(forged_png(20000, 20000)).decode()}),
        422,
        "2048x2048 pixels",
    ),
    "blank drawing": (
        dict(files={"file": ("blank.png", encode(Image.new("L", (50, 50), 255)), "image/png")}),
        422,
        "no ink",
    ),
    "invalid JSON": (
        dict(content=b'{"image": ', headers={"content-type": "application/json"}),
        400,
        "not valid JSON",
    ),
    "JSON without image": (dict(json={"picture": "x"}), 422, "field 'image'"),
    "JSON image not a string": (dict(json={"image": 7}), 422, "field 'image'"),
    "bad base64": (dict(json={"image": "not base64!"}), 400, "not valid base64"),
    "data URL not base64": (dict(json={"image": "data:image/png,abc"}), 400, "must be base64"),
    "multipart without file": (
        dict(files={"photo": ("7.png", b"x", "image/png")}),
        422,
        "no field 'file'",
    ),
    "file field as text": (dict(files={"file": (None, "7.png")}), 422, "not a file upload"),
    "unknown content type": (
        dict(content=b"abc", headers={"content-type": "text/plain"}),
        415,
        "'text/plain' not accepted",
    ),
    "broken multipart": (
        dict(content=b"--x\r\nbad", headers={"content-type": "multipart/form-data"}),
        400,
        "",
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
@pytest.mark.parametrize("endpoint", ["/api/predict", "/api/explain"])
def test_bad_input_gets_a_4xx_json_error_and_the_app_keeps_serving(client, name, endpoint):
    kwargs, status, words = BAD_INPUTS[name]
    r = client.post(endpoint, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["error"] and words in body["error"]
    assert "Traceback" not in r.text
    assert_serving(client)


def test_a_real_pixel_bomb_is_refused_before_it_is_decoded(client):
    """A genuine 8192x8192 PNG (64 Mpx, 16x the web cap) that compresses to a few KB."""
    bomb = encode(Image.new("1", (8192, 8192), 0))
    assert len(bomb) < 100_000
    r = client.post("/api/predict", files={"file": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 422 and "8192x8192 pixels is over the limit" in r.json()["error"]
    assert_serving(client)


def test_query_errors_are_json(client):
    r = client.post("/api/predict?top=0", content=digit_png(1), headers={"content-type": "image/png"})
    assert r.status_code == 422 and "top" in r.json()["error"]
    r = client.get("/api/predict")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    r = client.get("/api/nothing")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}


def test_a_bug_is_a_500_json_without_a_traceback(run_dir):
    app = create_app(run_dir)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("secret internals")

    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"error": "internal error (RuntimeError); the server log has details"}


# ----------------------------------------------------------------------------- body limit

LIMIT = 5 * 1024 * 1024


def test_declared_oversize_body_is_refused_with_413(client):
    r = client.post("/api/predict", content=b"\0" * (LIMIT + 1), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "5242881 bytes declared" in r.json()["error"]
    r = client.post("/api/predict", files={"file": ("big.png", b"\0" * LIMIT, "image/png")})
    assert r.status_code == 413  # the multipart framing pushes it over
    assert_serving(client)


def test_streamed_oversize_body_is_refused_with_413(client):
    def chunks():  # no Content-Length: chunked transfer encoding
        for _ in range(24):
            yield b"\0" * (256 * 1024)

    r = client.post("/api/predict", content=chunks(), headers={"content-type": "image/png"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413 and "more than 5242880 bytes sent" in r.json()["error"]
    assert_serving(client)


def run_asgi(app, path: str, method: str = "GET", headers=(), chunks=(b"",)):
    """Call an ASGI app with a raw path (no client normalises it); returns (status, body,
    number of body messages the app pulled)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    pulled = 0
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent = []

    async def receive():
        nonlocal pulled
        if pulled < len(messages):
            pulled += 1
            return messages[pulled - 1]
        await asyncio.sleep(3600)  # nothing more will come

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, pulled


def test_body_limit_stops_the_app_reading_as_soon_as_the_count_passes_it():
    seen = []

    async def reader(scope, receive, send):  # an app that would read everything
        while True:
            seen.append(await receive())
            if not seen[-1].get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    app = BodyLimitMiddleware(reader, max_bytes=1000, drain_bytes=1000)
    status, body, pulled = run_asgi(app, "/", "POST", chunks=[b"x" * 400] * 10)
    assert status == 413 and "more than 1000 bytes" in json.loads(body)["error"]
    assert len(seen) == 2 and pulled == 3  # the app got 800 bytes; the third part was refused
    seen.clear()
    status, body, pulled = run_asgi(app, "/", "POST", [("content-length", "4000")], [b"x" * 400] * 10)
    assert status == 413 and pulled == 0 and not seen  # refused on the header alone
    status, body, _ = run_asgi(app, "/", "POST", [("content-length", "12abc")], [b"x"])
    assert status == 400 and "Content-Length" in json.loads(body)["error"]
    assert run_asgi(app, "/", "POST", chunks=[b"x" * 400, b"x" * 600])[:2] == (200, b"read it all")


# ----------------------------------------------------------------------------- static files

TRAVERSALS = [
    "/static/../../etc/passwd",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/..%5c..%5cetc%5cpasswd",
    "/static/..\\..\\etc\\passwd",
    "/static/%252e%252e%252fetc%252fpasswd",
    "/static/app.js/../../../../etc/passwd",
    "/static//etc/passwd",
    "/static/",
    "/static/__init__.py",
    "/../cnnlab/web/app.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_reaches_the_file_system(run_dir, path):
    app = create_app(run_dir)
    for raw in (path, path.replace("%2f", "/").replace("%2e", ".")):  # as sent, and as decoded
        status, body, _ = run_asgi(app, raw)
        assert status == 404, (raw, body)
        assert b"root:" not in body and b"import" not in body and json.loads(body)["error"]


def test_traversal_through_the_client_too(client):
    for path in TRAVERSALS[:5]:
        r = client.get(path)
        assert r.status_code == 404 and "root:" not in r.text and r.json()["error"]


def test_page_and_static_files_are_offline_and_locked_down(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, kind in [("app.js", "text/javascript"), ("style.css", "text/css")]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert not re.search(r"https?://", r.text), f"{name} must not load anything from the network"
    assert not re.search(r"(src|href)=\"https?://", page.text)
    for ref in re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", page.text):
        assert client.get(ref).status_code == 200


# ----------------------------------------------------------------------------- concurrency


def test_concurrent_requests_get_the_answers_a_lone_request_gets(client):
    pngs = [digit_png(d, width=w) for d in range(10) for w in (8, 14)]
    alone = [
        client.post("/api/predict", content=p, headers={"content-type": "image/png"}).json()
        for p in pngs
    ]
    results, errors = {}, []

    def work(i):
        try:
            path = "/api/predict" if i % 3 else "/api/explain"  # explain runs alongside predict
            r = client.post(path, content=pngs[i % len(pngs)], headers={"content-type": "image/png"})
            results[i] = r.json() if path == "/api/predict" else r.json()["prediction"]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 48
    for i, got in results.items():
        want = alone[i % len(pngs)]
        assert got["label"] == want["label"] and got["input"] == want["input"]
        assert np.allclose(
            list(got["probabilities"].values()), list(want["probabilities"].values()), atol=1e-6
        )


# ----------------------------------------------------------------------------- the CLI


def test_serve_without_a_run_says_how_to_make_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "runs/demo/cnn" in err and "make demo" in err and "cnnlab train" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_refuses_bad_settings_in_one_line(tmp_path, run_dir, capsys):
    assert cli_main(["serve", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert cli_main(["serve", str(run_dir), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert cli_main(["serve", str(run_dir), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real MNIST


@pytest.mark.slow
def test_mnist_test_images_get_their_labels(tmp_path_factory, real_root):
    from cnnlab.data.datasets import load_dataset

    run_dir = mnist_web_run(tmp_path_factory, real_root)
    run = load_run(run_dir)
    test = load_dataset("mnist", "test", real_root)
    n = 40
    with torch.no_grad():  # the oracle: the model on the raw test tensors, no web, no PNG
        direct = run.model(to_model_input(test.images[:n], run.mean, run.std)).argmax(1).tolist()
    predictor = Predictor(run)
    with TestClient(create_app(run_dir), base_url=LOCAL) as c:
        labels = []
        for i in range(n):
            png = encode(Image.fromarray(test.images[i, 0].numpy()))
            r = c.post("/api/predict", files={"file": (f"mnist-{i}.png", png, "image/png")})
            assert r.status_code == 200, r.text
            got = r.json()
            # the page shows exactly what the library made of the upload
            seen = np.asarray(decode_data_url(got["input"]))
            assert np.array_equal(seen, predictor.preprocess(png).tensor[0].numpy())
            labels.append(int(got["label"]))
    truth = test.targets[:n].tolist()
    # MNIST-form images pass preprocessing (almost always) unchanged: the same answers as the
    # model on the raw tensors (test_preprocess measures 99.7 % unchanged on all 10k)
    assert sum(a == b for a, b in zip(labels, direct, strict=True)) >= n - 1
    assert sum(a == b for a, b in zip(labels, truth, strict=True)) >= 0.9 * n  # 93.5 % measured on 2000
