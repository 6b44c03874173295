"""The lab's API: many runs on one server (listing, ?run=, a bounded cache), the moved digit,
the shift test, the nudge and the shape calculator; every bad input is 4xx JSON and the
server keeps serving."""

from __future__ import annotations

import base64
import shutil

import pytest
import torch
from fastapi.testclient import TestClient

from cnnlab.cli import main as cli_main
from cnnlab.data import datasets
from cnnlab.robustness import affine_digit, shift_images, smallest_linf_nudge
from cnnlab.runs import load_run
from cnnlab.shapes import conv2d_output, pool2d_output
from cnnlab.web.app import create_app
from conftest import write_fake_dataset
from drawn import draw_digit, encode
from web_runs import fake_web_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """A runs folder holding demo/cnn and demo/mlp (fake-data runs) and a folder that is no run."""
    root = tmp_path_factory.mktemp("lab-runs")
    shutil.copytree(fake_web_run(tmp_path_factory, "cnn"), root / "demo" / "cnn")
    shutil.copytree(fake_web_run(tmp_path_factory, "mlp"), root / "demo" / "mlp")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run")
    return root


@pytest.fixture(scope="module")
def client(runs_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("lab-data")
    info = write_fake_dataset(data)  # the shift test reads the runs' ("fake") test images
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(datasets.DATASETS, "fake", info)
        datasets.clear_cache()
        with TestClient(create_app(runs_dir=runs_dir, data_root=data), base_url=LOCAL) as c:
            yield c
    datasets.clear_cache()


def png(d: int = 7) -> bytes:
    return encode(draw_digit(d))


def body(d: int = 7) -> dict:
    return {"image": base64.b64encode(png(d)).decode()}


def assert_serving(client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.post("/api/predict?run=demo/mlp", json=body(3)).status_code == 200


def test_runs_are_listed_from_their_files(client, runs_dir):
    got = client.get("/api/runs").json()
    assert [r["name"] for r in got["runs"]] == ["demo/cnn", "demo/mlp"] and got["default"] == "demo/cnn"
    for entry in got["runs"]:
        run = load_run(runs_dir / entry["name"])
        assert entry["model"] == run.model_name and entry["dataset"] == "fake" and entry["error"] is None
        assert entry["test_accuracy"] == run.metrics[-1]["test_acc"] and entry["epochs"] == 1
        assert entry["parameters"] == sum(p.numel() for p in run.model.parameters())


def test_every_model_endpoint_takes_a_run(client):
    assert client.get("/api/model").json()["run"] == "demo/cnn"  # demo/cnn is the default
    assert client.get("/api/model?run=demo/mlp").json()["model"] == "mlp"
    for run in ("demo/cnn", "demo/mlp"):
        p = client.post(f"/api/predict?run={run}", json=body(7))
        assert p.status_code == 200 and len(p.json()["probabilities"]) == 10
        assert client.post(f"/api/explain?run={run}", json=body(7)).status_code == 200


BAD_RUNS = {
    "../demo/cnn": 400,
    "demo/../demo/cnn": 400,
    "/etc/passwd": 400,
    "demo\\cnn": 400,
    "C:/x": 400,
    "demo/": 400,
    "": 400,
    "demo/nope": 404,
    "notes": 404,  # a folder without model.safetensors is no run
}


@pytest.mark.parametrize("name", list(BAD_RUNS))
def test_bad_run_names_are_4xx_json(client, name):
    for r in (
        client.get("/api/model", params={"run": name}),
        client.post("/api/predict", params={"run": name}, json=body()),
        client.get("/api/shift-test", params={"run": name}),
    ):
        assert r.status_code == BAD_RUNS[name], r.text
        assert list(r.json()) == ["error"] and "Traceback" not in r.text
    assert_serving(client)


def test_twenty_runs_never_hold_more_than_the_cache_bound(tmp_path, tmp_path_factory):
    source = fake_web_run(tmp_path_factory, "cnn")
    for i in range(20):
        shutil.copytree(source, tmp_path / "many" / f"r{i:02d}")
    app = create_app(runs_dir=tmp_path, cache_size=4)
    registry = app.state.registry
    with TestClient(app, base_url=LOCAL) as c:
        names = [r["name"] for r in c.get("/api/runs").json()["runs"]]
        assert len(names) == 20 and names[0] == "many/r00"
        for name in names:
            assert c.post("/api/predict", params={"run": name}, json=body(1)).status_code == 200
            assert len(registry.loaded()) <= 4
        assert registry.loaded() == names[-4:]  # least recently used dropped first


def test_moving_the_digit_moves_the_input_the_model_sees(client):
    plain = client.post("/api/predict?run=demo/mlp&top=10", json=body(7)).json()
    moved = client.post("/api/predict?run=demo/mlp&top=10&dx=5&dy=3", json=body(7)).json()
    assert plain["input"] != moved["input"] and plain["probabilities"] != moved["probabilities"]
    same = client.post("/api/predict?run=demo/mlp&dx=0&rotate=0&scale=1", json=body(7)).json()
    assert same == client.post("/api/predict?run=demo/mlp", json=body(7)).json()
    for bad in ("dx=15", "dy=-20", "rotate=181", "scale=0.1", "scale=3", "dx=abc"):
        r = client.post(f"/api/predict?{bad}", json=body(7))
        assert r.status_code == 422 and list(r.json()) == ["error"]


def test_affine_digit_moves_whole_pixels_exactly():
    x = torch.zeros(1, 28, 28, dtype=torch.uint8)
    x[0, 10:14, 8:12] = 200
    assert torch.equal(affine_digit(x, dx=3, dy=2), shift_images(x[None], 0)[0].roll((2, 3), (1, 2)))
    assert torch.equal(affine_digit(x), x)
    turned = affine_digit(x, rotate=90)
    assert turned.sum() > 0 and not torch.equal(turned, x)


def test_shift_test_matches_a_direct_measurement(client):
    got = client.get("/api/shift-test?run=demo/cnn&max_shift=3&n=50").json()
    assert got["shifts"] == [0, 1, 2, 3] and got["n"] == 50 and len(got["accuracy"]) == 4
    test = datasets.load_dataset("fake", "test", client.app.state.settings.data_root)
    run = load_run(client.app.state.registry.names()["demo/cnn"])
    for k, acc in zip(got["shifts"], got["accuracy"], strict=True):
        x = shift_images(test.images[:50], k).float() / 255
        with torch.no_grad():
            pred = run.model((x - run.mean[0]) / run.std[0]).argmax(1)
        assert acc == pytest.approx((pred == test.targets[:50]).float().mean().item())
    assert client.get("/api/shift-test?run=demo/cnn&max_shift=3&n=50").json() == got  # cached


@pytest.mark.parametrize("query", ["max_shift=15", "max_shift=-1", "n=0", "n=10001", "n=99999999"])
def test_shift_test_bounds_are_400(client, query):
    r = client.get(f"/api/shift-test?{query}")
    assert r.status_code == 400 and list(r.json()) == ["error"]
    assert_serving(client)


def test_the_nudge_changes_the_answer_with_a_small_change(client):
    r = client.post("/api/adversarial?run=demo/cnn&compare=demo/mlp", json=body(7))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["found"] and got["adversarial_label"] != got["label"]
    assert 0 < got["linf"] <= 1 and got["l2"] >= got["linf"]
    assert got["readings"]["demo/cnn"]["label"] == got["adversarial_label"]
    assert set(got["readings"]) == {"demo/cnn", "demo/mlp"}
    assert got["image"].startswith("data:image/png;base64,")
    for bad in (dict(content=b"hello", headers={"content-type": "text/plain"}), dict(json={"x": 1})):
        r = client.post("/api/adversarial", **bad)
        assert 400 <= r.status_code < 500 and list(r.json()) == ["error"]
    assert client.post("/api/adversarial?compare=../x", json=body()).status_code == 400
    assert_serving(client)


def test_smallest_nudge_stays_in_the_image_and_its_size(tmp_path_factory):
    run = load_run(fake_web_run(tmp_path_factory, "mlp"))
    x = torch.rand(4, 1, 28, 28)
    labels = run.model((x - run.mean[0]) / run.std[0]).argmax(1)
    n = smallest_linf_nudge(run.model, x, labels, run.mean, run.std)
    assert n.images.min() >= 0 and n.images.max() <= 1
    delta = (n.images - x).flatten(1).abs().amax(1)
    assert torch.allclose(delta, n.linf) and bool((n.labels[n.found] != labels[n.found]).all())


@pytest.mark.parametrize(
    "query, want",
    [
        ("input=28&kernel=3", conv2d_output((28, 28), 3)),
        (
            "input=28,20&kernel=5,3&stride=2,1&padding=1,0",
            conv2d_output((28, 20), (5, 3), (2, 1), (1, 0)),
        ),
        ("input=28&kernel=3&padding=same", conv2d_output(28, 3, 1, "same")),
        ("input=32&kernel=3&dilation=2", conv2d_output(32, 3, 1, 0, 2)),
    ],
)
def test_shapes_conv_is_cnnlab_shapes(client, query, want):
    got = client.get(f"/api/shapes/conv?{query}").json()
    assert got["output"] == list(want.size) and got["formula"] == want.formula()
    assert got["code"].startswith("nn.Conv2d(1, 8, kernel_size=")


def test_shapes_pool_and_solve(client):
    got = client.get("/api/shapes/pool?input=25&kernel=2&ceil_mode=true").json()
    want = pool2d_output(25, 2, ceil_mode=True)
    assert got["output"] == list(want.size) == [13, 13] and got["formula"] == want.formula()
    assert got["code"] == "nn.MaxPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True)"
    assert got["axes"]["h"]["starts"][:3] == [0, 2, 4]
    sol = client.get("/api/shapes/solve?input=28&kernel=3&target=14").json()
    assert sol["best"] == "stride=2, padding=1" and sol["matches"][0]["size"] == [14, 14]


@pytest.mark.parametrize(
    "path",
    [
        "/api/shapes/conv?input=3&kernel=5",  # kernel larger than the input: PyTorch raises
        "/api/shapes/conv?input=28&kernel=3&stride=0",
        "/api/shapes/conv?input=28&kernel=3&padding=-1",
        "/api/shapes/conv?input=28&kernel=3&stride=2&padding=same",
        "/api/shapes/conv?input=abc&kernel=3",
        "/api/shapes/conv?input=1,2,3&kernel=3",
        "/api/shapes/pool?input=28&kernel=2&padding=2",
        "/api/shapes/pool?input=28&kernel=2&op=avg&dilation=2",
        "/api/shapes/solve?input=28&kernel=3&target=0",
    ],
)
def test_shapes_errors_are_400_json(client, path):
    r = client.get(path)
    assert r.status_code == 400 and list(r.json()) == ["error"] and r.json()["error"]


def test_serve_refuses_a_missing_runs_folder(tmp_path, capsys):
    assert cli_main(["serve", "--runs", str(tmp_path / "nope")]) == 2
    assert "--runs" in capsys.readouterr().err
    assert cli_main(["serve", "--runs", str(tmp_path)]) == 2  # an empty folder: nothing to serve
    assert "no run folders" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config", "floor"),
    [
        ({"label_smoothing": 0.1}, 0.5003),
        ({"label_smoothing": 0.0}, None),
        ({}, None),
        ({"label_smoothing": "0.1"}, None),
        ({"label_smoothing": True}, None),
        ({"label_smoothing": 1.5}, None),
        ({"label_smoothing": float("nan")}, None),
    ],
)
def test_a_runs_smoothing_floor_comes_only_from_a_valid_setting(config, floor):
    """config.json is a user's file: anything but a number in [0, 1) gives no floor, no error."""
    from cnnlab.web.routes_inspect import train_loss_floor

    got = train_loss_floor(config, [str(d) for d in range(10)])
    assert got == (pytest.approx(floor, abs=1e-4) if floor is not None else None)


@pytest.mark.parametrize(
    ("report", "shown"),
    [
        ({"accuracy_one_pass": 0.9945, "tta": 4}, {"accuracy_one_pass": 0.9945, "tta": 4}),
        ({}, {"accuracy_one_pass": None, "tta": 0}),
        ({"accuracy_one_pass": "<img>", "tta": 4}, {"accuracy_one_pass": None, "tta": 0}),
        ({"accuracy_one_pass": 1.5, "tta": 4}, {"accuracy_one_pass": None, "tta": 0}),
        ({"accuracy_one_pass": 0.99, "tta": True}, {"accuracy_one_pass": None, "tta": 0}),
    ],
)
def test_the_single_read_accuracy_comes_only_from_valid_eval_json(report, shown):
    from cnnlab.web.routes_inspect import _one_pass

    assert _one_pass(report) == shown
