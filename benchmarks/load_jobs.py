"""Load check of drawing while a job trains: N concurrent clients POST /api/predict (the Draw
page's traffic) to a `cnnlab serve` on loopback while a Train-page job runs, beside the same
job's time with no clients.

    python benchmarks/load_jobs.py --run runs/demo/cnn [--clients 50] [--subset 5000]

It starts `cnnlab serve RUN --runs TMP --port 0 --quiet` (127.0.0.1 only), runs the job once
alone, then once with the clients drawing until it ends (bounded by --max-seconds), and
prints: requests, 5xx and other errors, p50/p95/max latency, and both job times (from submit
to done). Client, server and job share the machine's cores. Prints only.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # drawn.py: digits drawn with lines, as on the page


def get_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/demo/cnn", help="run folder to serve (default: runs/demo/cnn)")
    p.add_argument("--clients", type=int, default=50, help="concurrent drawing clients (default: 50)")
    p.add_argument("--subset", type=int, default=5000, help="the job's training images (default: 5000)")
    p.add_argument("--epochs", type=int, default=2, help="the job's epochs (default: 2)")
    p.add_argument(
        "--max-seconds", type=float, default=300, help="stop the clients after this (default: 300)"
    )
    return p.parse_args()


def request(url: str, body: bytes | None = None, method: str = "GET") -> tuple[int, bytes]:
    """(status, body) of one request with its own connection."""
    req = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def run_job(url: str, name: str, args) -> float:
    """Seconds from submitting a `fast` job to its end (it must end `done`)."""
    job = {"recipe": "fast", "epochs": args.epochs, "train_subset": args.subset, "test_subset": 1000}
    start = time.perf_counter()
    status, body = request(url + "api/jobs", json.dumps({**job, "name": name}).encode(), "POST")
    if status != 202:
        raise SystemExit(f"job refused: {status} {body[:200]!r}")
    job_id = json.loads(body)["id"]
    while True:
        state = json.loads(request(url + f"api/jobs/{job_id}")[1])
        if state["state"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    if state["state"] != "done":
        raise SystemExit(f"job {state['state']}: {state['error']}")
    return time.perf_counter() - start


def client(url: str, body: bytes, stop: threading.Event, out: list) -> None:
    """Draw (POST /api/predict) until told to stop; (status, seconds) per request."""
    while not stop.is_set():
        t = time.perf_counter()
        try:
            status, _ = request(url + "api/predict", body, "POST")
        except OSError:
            status = -1
        out.append((status, time.perf_counter() - t))


def main() -> None:
    from drawn import draw_digit, encode

    args = get_args()
    runs = Path(tempfile.mkdtemp(prefix="load-jobs-"))
    shutil.copytree(args.run, runs / "served")
    server = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "serve", "--runs", str(runs), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/", server.stdout.readline()).group(0)
        alone = run_job(url, "alone", args)
        body = json.dumps({"image": base64.b64encode(encode(draw_digit(7))).decode()}).encode()
        stop, results = threading.Event(), []
        threads = [
            threading.Thread(target=client, args=(url, body, stop, results)) for _ in range(args.clients)
        ]
        for t in threads:
            t.start()
        timer = threading.Timer(args.max_seconds, stop.set)
        timer.start()
        try:
            loaded = run_job(url, "loaded", args)
        finally:
            stop.set()
            timer.cancel()
            for t in threads:
                t.join()
    finally:
        server.terminate()
        server.wait(60)
        shutil.rmtree(runs, ignore_errors=True)
    report(results, alone, loaded, args)


def report(results: list, alone: float, loaded: float, args) -> None:
    """Print the figures."""
    seconds = sorted(s for _, s in results)
    codes = [c for c, _ in results]
    q = statistics.quantiles(seconds, n=20) if len(seconds) >= 20 else [float("nan")] * 19
    print(f"{len(results)} POST /api/predict from {args.clients} clients while the job trained")
    print(
        f"  5xx: {sum(500 <= c < 600 for c in codes)}  (503 busy: {codes.count(503)}), "
        f"other errors: {sum(c != 200 and not 500 <= c < 600 for c in codes)}"
    )
    print(
        f"  latency p50 {1000 * statistics.median(seconds):.0f} ms, p95 {1000 * q[18]:.0f} ms, "
        f"max {1000 * seconds[-1]:.0f} ms"
    )
    print(
        f"job (fast, {args.epochs} epochs on {args.subset} images): {alone:.1f} s alone, "
        f"{loaded:.1f} s with the clients"
    )


if __name__ == "__main__":
    main()
