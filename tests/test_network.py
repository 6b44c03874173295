"""The Network page's numbers: `layer_trace` against a hand computation and on every registered
model, and `POST /api/explain?layers=every` (every layer, its windows and the formula's numbers,
capped sizes, 4xx JSON for bad inputs); /docs served from local files."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil

import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from torch import nn

from cnnlab.explain import layer_trace
from cnnlab.explain_trace import Field
from cnnlab.models import get_model, list_models
from cnnlab.preprocess import to_model_input
from cnnlab.runs import load_run
from cnnlab.shapes import conv2d_output, pool2d_output
from cnnlab.web.app import create_app
from cnnlab.web.network import MAX_MAPS, MAX_VALUES, layer_json
from cnnlab.web.payload import WHITE_QUANTILE
from drawn import draw_digit, encode
from web_runs import fake_web_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
LOCAL = "http://127.0.0.1"


def small_model() -> nn.Sequential:
    """conv 1->2 3x3 pad 1, ReLU, 2x2 max pool, flatten, linear 32->3, with fixed weights."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 3)
    ).eval()


def test_trace_of_a_small_model_is_the_hand_computation():
    model = small_model()
    x = torch.randn(1, 1, 8, 8)
    trace = layer_trace(model, x)
    assert [(t.name, t.kind) for t in trace] == [
        ("0", "conv"),
        ("1", "activation"),
        ("2", "pool"),
        ("3", "flatten"),
        ("4", "linear"),
        ("softmax", "softmax"),
    ]
    conv, relu, pool, flat, linear = model
    c = F.conv2d(x, conv.weight, conv.bias, padding=1)
    r = c.clamp(min=0)
    p = F.max_pool2d(r, 2)
    logits = p.flatten(1) @ linear.weight.T + linear.bias
    for t, want in zip(trace, [c, r, p, p.flatten(1), logits, torch.softmax(logits, 1)], strict=True):
        assert torch.allclose(t.output, want[0].detach(), atol=1e-6), t.name
    assert [t.params for t in trace] == [2 * 9 + 2, 0, 0, 0, 32 * 3 + 3, 0]
    assert [t.input_shape for t in trace] == [(1, 8, 8), (2, 8, 8), (2, 8, 8), (2, 4, 4), (32,), (3,)]
    assert float(trace[-1].output.sum()) == pytest.approx(1.0)
    # receptive fields: the conv sees 3x3 from one pixel before; a pooled pixel covers two conv
    # pixels, each 3 wide, one apart: 4 input pixels, 2 per step, starting one before
    assert trace[0].field == Field((3, 3), (1, 1), (-1, -1), (8, 8))
    assert trace[1].field == trace[0].field
    assert trace[2].field == Field((4, 4), (2, 2), (-1, -1), (8, 8))
    rows, cols = trace[2].field.windows((4, 4))
    assert rows == [(0, 2), (1, 4), (3, 6), (5, 7)] and cols == rows  # clipped to 0..7
    assert trace[3].field is None and trace[4].field is None
    assert trace[0].geometry == conv2d_output((8, 8), 3, 1, 1)
    assert trace[2].geometry == pool2d_output((8, 8), 2)
    assert torch.equal(trace[2].inputs, r[0])  # what the pool read, for its windows


def test_the_callers_model_keeps_no_hooks_and_its_mode():
    model = small_model().train()
    layer_trace(model, torch.randn(2, 1, 8, 8))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("name", list_models())
def test_trace_runs_on_every_registered_model(name):
    model = get_model(name).eval()
    trace = layer_trace(model, torch.randn(1, 1, 28, 28))
    assert trace[-1].kind == "softmax" and trace[-1].output.shape == (10,)
    assert float(trace[-1].output.sum()) == pytest.approx(1.0, abs=1e-5)
    with torch.inference_mode():
        logits = model(torch.zeros(1, 1, 28, 28))
    assert trace[-2].output.shape == logits.shape[1:]
    assert sum(t.params for t in trace) == sum(p.numel() for p in model.parameters())
    for t in trace:
        if t.output.dim() == 3:  # every stack of maps knows which input pixels it saw
            rows, cols = t.field.windows(tuple(t.output.shape[-2:]))
            assert len(rows) == t.output.shape[1] and len(cols) == t.output.shape[2]
            assert all(0 <= a <= b <= 27 for a, b in rows + cols)
    if name == "mlp":
        assert [t.kind for t in trace[:3]] == ["flatten", "linear", "activation"]


def test_layer_json_caps_maps_and_values():
    model = nn.Sequential(nn.Conv2d(1, 40, 3), nn.Flatten(), nn.Linear(40 * 6 * 6, 3))
    trace = layer_trace(model, torch.randn(1, 1, 8, 8))
    conv, flat = layer_json(trace[0]), layer_json(trace[1])
    assert len(conv["maps"]) == MAX_MAPS and conv["channels"] == 40 and conv["values"] is None
    assert flat["maps"] is None and len(flat["values"]) == MAX_VALUES and flat["size"] == 1440


# ----------------------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("net-runs")
    shutil.copytree(fake_web_run(tmp_path_factory, "cnn"), root / "demo" / "cnn")
    shutil.copytree(fake_web_run(tmp_path_factory, "mlp"), root / "demo" / "mlp")
    return root


@pytest.fixture(scope="module")
def client(runs_dir):
    with TestClient(create_app(runs_dir=runs_dir), base_url=LOCAL) as c:
        yield c


def every(client, run: str, digit: int = 7):
    r = client.post(
        f"/api/explain?layers=every&top=10&run={run}",
        content=encode(draw_digit(digit)),
        headers={"content-type": "image/png"},
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_every_layer_of_a_cnn_run(client, runs_dir):
    got = every(client, "demo/cnn")
    run = load_run(runs_dir / "demo" / "cnn")
    x = torch.zeros(1, *run.input_shape)
    want = layer_trace(run.model, x)
    assert [ly["name"] for ly in got["layers"]] == [t.name for t in want]
    assert [ly["shape"] for ly in got["layers"]] == [list(t.output.shape) for t in want]
    assert [ly["params"] for ly in got["layers"]] == [t.params for t in want]
    modules = dict(run.model.named_modules())
    convs = [ly for ly in got["layers"] if ly["kind"] == "conv"]
    assert convs
    for ly in convs:
        m = modules[ly["name"]]
        shape = conv2d_output(ly["input_shape"][1:], m.kernel_size, m.stride, m.padding, m.dilation)
        assert ly["conv"]["formula"] == shape.formula()
        assert ly["conv"]["kernel"] == list(m.kernel_size) and ly["conv"]["stride"] == list(m.stride)
        assert len(ly["conv"]["rows"]) == ly["shape"][1] and len(ly["field"]["rows"]) == ly["shape"][1]
        assert (
            ly["conv"]["receptive_field"] == ly["field"]["size"]
            and ly["conv"]["jump"] == ly["field"]["jump"]
        )
    pools = [ly for ly in got["layers"] if ly["pool"]]
    assert pools
    for ly in pools:  # each example window's output is the max of its input cells
        patch = ly["pool"]["patch"]
        for cell in patch["cells"]:
            (r0, r1), (c0, c1) = cell["rows"], cell["cols"]
            window = [v for row in patch["input"][r0 : r1 + 1] for v in row[c0 : c1 + 1]]
            assert cell["value"] == pytest.approx(max(window), abs=1e-3)
    soft = got["layers"][-1]
    assert soft["kind"] == "softmax" and sum(soft["values"]) == pytest.approx(1.0, abs=1e-3)
    probs = got["prediction"]["probabilities"]
    assert soft["values"] == pytest.approx([probs[c] for c in got["classes"]], abs=1e-4)


def test_every_layer_of_an_mlp_run(client):
    got = every(client, "demo/mlp", 3)
    kinds = [ly["kind"] for ly in got["layers"]]
    assert kinds[0] == "flatten" and kinds[-1] == "softmax"
    assert kinds.count("linear") >= 2 and "activation" in kinds  # its hidden layers too
    assert all(ly["maps"] is None and ly["field"] is None for ly in got["layers"])
    assert got["layers"][0]["values"] and len(got["layers"][0]["values"]) == 28 * 28


def test_old_layer_values_answer_as_before(client):
    png = encode(draw_digit(5))
    r = client.post(
        "/api/explain?layers=all&run=demo/cnn", content=png, headers={"content-type": "image/png"}
    )
    assert r.status_code == 200 and {ly["kind"] for ly in r.json()["layers"]} == {"conv", "pool"}
    assert "description" in r.json()["layers"][0] and "params" not in r.json()["layers"][0]


@pytest.mark.parametrize(
    ("query", "kwargs", "status", "words"),
    [
        ("run=demo/nothing", dict(content=encode(draw_digit(1))), 404, "no run"),
        ("run=../etc", dict(content=encode(draw_digit(1))), 400, "run name"),
        ("run=demo/cnn", dict(content=b"just some text\n" * 20), 415, "not an image"),
        ("run=demo/cnn", dict(content=b""), 400, "empty"),
        ("run=demo/cnn&layers=everything", dict(content=encode(draw_digit(1))), 422, "layers"),
    ],
)
def test_bad_inputs_are_4xx_json(client, query, kwargs, status, words):
    query = query if "layers=" in query else f"{query}&layers=every"
    r = client.post(f"/api/explain?{query}", headers={"content-type": "image/png"}, **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_docs_is_served_from_local_files(client):
    r = client.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    assert "/static/swagger-ui-bundle.js" in html and "/static/swagger-ui.css" in html
    assert "cdn" not in html.lower() and "https://" not in html
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in r.headers["content-security-policy"]
    js = client.get("/static/swagger-ui-bundle.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert client.get("/redoc").status_code == 404  # it would need a CDN
    assert client.get("/static/..%2Fapp.py").status_code == 404


def test_network_page_is_served_with_the_nav(client):
    for path in ("/", "/network", "/shapes"):
        html = client.get(path).text
        assert '<a href="/network"' in html and '<a href="/docs">API</a>' in html
    assert 'aria-current="page">Network' in client.get("/network").text
    assert client.get("/static/network.js").status_code == 200


def test_trace_input_is_what_predict_sees(client, runs_dir):
    png = encode(draw_digit(2))
    got = every(client, "demo/cnn", 2)
    run = load_run(runs_dir / "demo" / "cnn")
    from cnnlab.predict import Predictor

    p = Predictor(run)
    (pred,) = p.predict([png], top=10)
    want = layer_trace(p.model, to_model_input(pred.input, p.mean, p.std))
    first = got["layers"][0]
    lo, hi = first["range"]
    assert lo == pytest.approx(float(want[0].output[:MAX_MAPS].min()), abs=1e-4)
    shown = want[0].output[:MAX_MAPS].flatten()
    assert hi == pytest.approx(float(torch.quantile(shown, WHITE_QUANTILE)), abs=1e-4)  # white
    assert got["prediction"]["label"] == pred.label
