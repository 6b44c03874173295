"""The job API and the Runs page's API: bad job fields are 400 naming the field, a flood
beyond the queue 429, cross-origin and form posts refused, a token needed off loopback, a
failing job `failed` with its one-line error, a real MNIST job `done` with its events, and a
job stopped by SIGTERM to `cnnlab serve` resumes to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from cnnlab.cli import main as cli_main
from cnnlab.web.app import create_app
from cnnlab.web.jobs import JobSettings
from web_runs import fake_web_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
LOCAL = "http://127.0.0.1"
QUICK = {"recipe": "fast", "train_subset": 1000, "test_subset": 500, "epochs": 1, "threads": 1}
# A job to cancel: QUICK can end before the DELETE arrives, and a job that ended stays "done".
LONG = {**QUICK, "train_subset": 20000, "epochs": 20}


@pytest.fixture
def runs_dir(tmp_path_factory, tmp_path):
    """A runs folder holding one (fake-data) run, so that the server has something to serve."""
    root = tmp_path / "runs"
    shutil.copytree(fake_web_run(tmp_path_factory, "cnn"), root / "demo" / "cnn")
    return root


def client_for(runs_dir, **settings) -> TestClient:
    return TestClient(create_app(runs_dir=runs_dir, jobs=JobSettings(**settings)), base_url=LOCAL)


def wait_finished(client, job_id: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout_s} s")


BAD_FIELDS = [
    ({"epochs": 0}, "epochs"),
    ({"epochs": "three"}, "epochs"),
    ({"lr": -1}, "lr"),
    ({"batch_size": 0}, "batch"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"model_kwargs": [1]}, "model_kwargs"),
    ({"recipe": "nope"}, "recipe"),
    ({"name": "../escape"}, "name"),
    ({"name": ".hidden"}, "name"),
    ({"name": "a/b"}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"dataset": "imagefolder:/etc"}, "dataset"),
    ({"dataset": "nosuch"}, "dataset"),
    ({"data_root": "/"}, "data_root"),
    ({"bogus": 1}, "bogus"),
    ({"resume": "../x"}, "resume"),
    ({"resume": "nosuch"}, "resume"),
    ({"resume": "demo", "lr": 1}, "lr"),
]


@pytest.mark.parametrize(("body", "field"), BAD_FIELDS)
def test_bad_job_field_is_400_naming_it(runs_dir, body, field):
    with client_for(runs_dir) as c:
        r = c.post("/api/jobs", json=body)
        assert r.status_code == 400, r.text
        assert field in r.json()["error"]
        assert c.get("/api/jobs").json()["jobs"] == []


def test_body_that_is_no_job_is_400(runs_dir):
    with client_for(runs_dir) as c:
        assert (
            c.post(
                "/api/jobs", content=b"{not json", headers={"content-type": "application/json"}
            ).status_code
            == 400
        )
        assert c.post("/api/jobs", json=[1, 2]).status_code == 400


def test_image_folders_only_under_data_dir(runs_dir, tmp_path):
    data = tmp_path / "data"
    (data / "empty").mkdir(parents=True)
    with client_for(runs_dir, data_dir=data) as c:
        assert "imagefolder:empty" in c.get("/api/jobs/options").json()["datasets"]
        r = c.post("/api/jobs", json={"dataset": "imagefolder:../runs"})
        assert r.status_code == 400 and "dataset" in r.json()["error"]
        job = c.post("/api/jobs", json={**QUICK, "dataset": "imagefolder:empty", "name": "bad-data"})
        assert job.status_code == 202, job.text
        done = wait_finished(c, job.json()["id"])
    assert done["state"] == "failed"
    assert done["error"] and "\n" not in done["error"]
    assert "empty" in done["error"] or "class" in done["error"] or "image" in done["error"]


def test_flood_beyond_the_queue_is_429(runs_dir):
    with client_for(runs_dir, max_jobs=1, queue=2) as c:
        answers = [c.post("/api/jobs", json={**LONG, "name": f"flood{i}"}) for i in range(5)]
        codes = [a.status_code for a in answers]
        assert codes == [202, 202, 202, 429, 429], codes
        assert "queue" in answers[3].json()["error"]
        states = [j["state"] for j in c.get("/api/jobs").json()["jobs"]]
        assert sorted(states) == ["queued", "queued", "running"]
        for a in answers[:3]:
            assert c.delete(f"/api/jobs/{a.json()['id']}").status_code == 200
        for a in answers[:3]:
            assert wait_finished(c, a.json()["id"])["state"] == "cancelled"


def test_cross_origin_and_form_posts_are_refused(runs_dir):
    with client_for(runs_dir) as c:
        r = c.post("/api/jobs", json=QUICK, headers={"origin": "http://evil.example"})
        assert r.status_code == 403
        r = c.post(
            "/api/jobs",
            content=b"recipe=fast",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 415 and "application/json" in r.json()["error"]
        r = c.post("/api/jobs", content=json.dumps(QUICK), headers={"content-type": "text/plain"})
        assert r.status_code == 415
        r = c.delete("/api/jobs/x", headers={"origin": "http://evil.example"})
        assert r.status_code == 403
        assert c.get("/api/jobs").json()["jobs"] == []


def test_non_loopback_needs_the_token(runs_dir):
    token = "s3cret-token"
    with client_for(runs_dir, token=token) as c:
        for method, path in (("get", "/api/jobs"), ("post", "/api/jobs"), ("delete", "/api/jobs/x")):
            r = getattr(c, method)(path)
            assert r.status_code == 401, (method, path, r.text)
            assert "token" in r.json()["error"]
        assert c.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/login?token=wrong", follow_redirects=False).status_code == 401
        r = c.get(f"/login?token={token}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/train"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/api/jobs").status_code == 200  # the cookie now
        assert c.get("/api/runs").status_code == 200  # the rest of the lab is as before


def test_loopback_needs_no_token(runs_dir):
    with client_for(runs_dir) as c:
        assert c.get("/api/jobs").status_code == 200
        assert c.get("/login", follow_redirects=False).status_code == 303


def test_unknown_job_and_run_names(runs_dir):
    with client_for(runs_dir) as c:
        assert c.get("/api/jobs/nosuch").status_code == 404
        assert c.delete("/api/jobs/nosuch").status_code == 404
        assert c.get("/api/runs/nosuch").status_code == 404
        assert c.get("/api/runs/..%2Fdemo").status_code == 400
        assert c.get("/api/runs/demo/cnn/errors?true=1&pred=x").status_code == 422
        for r in (c.get("/api/runs/nosuch"), c.get("/api/runs/..%2Fdemo")):
            assert "error" in r.json()


def sse_events(client, job_id: str) -> list[dict]:
    with client.stream("GET", f"/api/jobs/{job_id}/events") as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]


@pytest.mark.slow
def test_real_job_finishes_with_events_and_its_run_is_inspectable(runs_dir, real_root):
    with client_for(runs_dir) as c:
        r = c.post("/api/jobs", json={**QUICK, "epochs": 2, "name": "quick"})
        assert r.status_code == 202 and r.json()["run"] == "quick"
        events = sse_events(c, r.json()["id"])
        kinds = [e["event"] for e in events]
        assert kinds[0] == "job" and kinds[-2:] == ["done", "state"], kinds
        assert {"start", "step", "epoch_end"} <= set(kinds)
        assert events[-1]["state"] == "done"
        job = c.get(f"/api/jobs/{r.json()['id']}").json()
        assert job["state"] == "done" and len(job["metrics"]) == 2 and job["error"] is None
        row = next(x for x in c.get("/api/run-table").json()["runs"] if x["name"] == "quick")
        assert row["state"] == "done" and row["epochs"] == 2 and row["model"] == "fast"
        assert "quick" in [x["name"] for x in c.get("/api/runs").json()["runs"]]  # Draw's list too
        detail = c.get("/api/runs/quick").json()
        cm = detail["confusion"]
        assert len(cm) == 10 and all(len(row) == 10 for row in cm) and sum(map(sum, cm)) == 500
        assert len(detail["metrics"]) == 2 and detail["config"]["train_subset"] == 1000
        assert sorted({s["epoch"] for s in detail["steps"]}) == [1, 2]  # for the step curve
        assert detail["train_loss_floor"] == pytest.approx(0.5003, abs=1e-4)  # fast: smoothing 0.1
        assert detail["tta"] == 4 and 0 <= detail["accuracy_one_pass"] <= 1  # fast: 4 shifts
        assert [s["class"] for s in detail["per_class"]] == [str(d) for d in range(10)]
        t, p = max(
            ((i, j) for i in range(10) for j in range(10) if i != j), key=lambda ij: cm[ij[0]][ij[1]]
        )
        cell = c.get(f"/api/runs/quick/errors?true={t}&pred={p}&limit=50").json()["errors"]
        assert len(cell) == min(cm[t][p], 50)
        confidences = [e["confidence"] for e in cell]
        assert confidences == sorted(confidences, reverse=True)
        assert all(e["image"].startswith("data:image/png;base64,") for e in cell)
        assert all(e["saliency"].startswith("data:image/png;base64,") for e in cell)
        assert (runs_dir / "quick" / "eval.json").is_file() and (
            runs_dir / "quick" / "eval_predictions.json"
        ).is_file()
        assert c.get(f"/api/runs/quick/errors?true={t}&pred={t}").json()["errors"] == []


# Epochs of about 1.5 s: long enough that a stop sent after one event lands before the next.
MLP_JOB = {
    "recipe": "lesson-mlp",
    "epochs": 4,
    "batch_size": 16,
    "train_subset": 15000,
    "test_subset": 500,
}


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


@pytest.mark.slow
def test_sigterm_to_serve_leaves_the_job_resumable_to_the_same_weights(runs_dir, real_root, tmp_path):
    server = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "serve", "--runs", str(runs_dir), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
        job = _post(url + "api/jobs", {**MLP_JOB, "threads": 1, "name": "stopped"})
        deadline = time.monotonic() + 240
        while not _get(url + f"api/jobs/{job['id']}")["metrics"]:
            assert time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        server.wait(90)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    folder = runs_dir / "stopped"
    saved = json.loads((folder / "metrics.json").read_text())
    assert 1 <= len(saved) < MLP_JOB["epochs"], "the job was not stopped mid-run"
    with TestClient(create_app(runs_dir=runs_dir), base_url=LOCAL) as c:  # the next start
        row = next(x for x in c.get("/api/run-table").json()["runs"] if x["name"] == "stopped")
        assert row["state"] == "resumable"
    assert cli_main(["train", "--resume", str(folder), "--threads", "1", "--quiet"]) == 0
    flags = ["--recipe", "lesson-mlp", "--epochs", "4", "--batch-size", "16"]
    flags += ["--train-subset", str(MLP_JOB["train_subset"])]
    whole = tmp_path / "whole"
    assert (
        cli_main(
            ["train", *flags, "--test-subset", "500", "--threads", "1", "--quiet", "--out", str(whole)]
        )
        == 0
    )
    resumed, uninterrupted = (
        load_file(folder / "model.safetensors"),
        load_file(whole / "model.safetensors"),
    )
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed[name], tensor), name


def test_a_run_retrained_in_place_is_reloaded(runs_dir):
    """A resumed job rewrites a served run's weights: the server loads the new ones."""
    with client_for(runs_dir) as c:
        registry = c.app.state.registry
        first = registry.get("demo/cnn")
        assert registry.get("demo/cnn") is first  # cached while unchanged
        weights = runs_dir / "demo" / "cnn" / "model.safetensors"
        stat = weights.stat()
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        again = registry.get("demo/cnn")
        assert again is not first and again.weights_mtime_ns == weights.stat().st_mtime_ns


@pytest.mark.slow
def test_nproc_job_runs_under_torchrun_and_reports_once(runs_dir, real_root):
    with client_for(runs_dir, nproc=2) as c:
        r = c.post("/api/jobs", json={**QUICK, "name": "two"})
        events = sse_events(c, r.json()["id"])
    kinds = [e["event"] for e in events]
    assert kinds.count("start") == 1 and kinds.count("done") == 1, kinds  # rank 0 reports
    assert next(e for e in events if e["event"] == "start")["processes"] == 2
    assert events[-1]["state"] == "done"


@pytest.mark.slow
def test_job_cancelled_in_its_first_epoch_is_listed_and_resumes(runs_dir, real_root):
    with client_for(runs_dir) as c:
        job = c.post("/api/jobs", json={**MLP_JOB, "epochs": 2, "threads": 1, "name": "early"}).json()
        deadline = time.monotonic() + 240
        while "step" not in c.get(f"/api/jobs/{job['id']}").json()["progress"]:
            assert time.monotonic() < deadline, "no step reported"
            time.sleep(0.1)
        c.delete(f"/api/jobs/{job['id']}")
        stopped = wait_finished(c, job["id"])
        assert stopped["state"] == "cancelled" and stopped["resumable"], stopped
        assert not json.loads((runs_dir / "early" / "metrics.json").read_text() or "[]")
        row = next(x for x in c.get("/api/run-table").json()["runs"] if x["name"] == "early")
        assert row["state"] == "resumable" and not row["epochs"]
        again = c.post("/api/jobs", json={"resume": "early"})
        assert again.status_code == 202, again.text
        assert wait_finished(c, again.json()["id"])["state"] == "done"
        row = next(x for x in c.get("/api/run-table").json()["runs"] if x["name"] == "early")
        assert row["state"] == "done" and row["epochs"] == 2


def test_run_folder_with_settings_only_is_listed_resumable(runs_dir):
    (runs_dir / "settings-only").mkdir()
    (runs_dir / "settings-only" / "config.json").write_text(
        json.dumps({"model": "mlp", "dataset": "mnist", "epochs": 3})
    )
    with client_for(runs_dir) as c:
        rows = {r["name"]: r for r in c.get("/api/run-table").json()["runs"]}
        assert (
            rows["settings-only"]["state"] == "resumable" and rows["settings-only"]["weights"] is False
        )
        assert rows["demo/cnn"]["state"] == "done" and rows["demo/cnn"]["date"]
        assert "settings-only" not in [r["name"] for r in c.get("/api/runs").json()["runs"]]


def test_no_queue_still_runs_one_job_at_a_time(runs_dir):
    with client_for(runs_dir, max_jobs=1, queue=0) as c:
        first = c.post("/api/jobs", json={**LONG, "name": "only"})
        assert first.status_code == 202
        assert c.post("/api/jobs", json={**QUICK, "name": "second"}).status_code == 429
        c.delete(f"/api/jobs/{first.json()['id']}")
        assert wait_finished(c, first.json()["id"])["state"] == "cancelled"
