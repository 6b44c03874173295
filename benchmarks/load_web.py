"""Load check of the web app: 200 concurrent POST /api/predict requests against a running
`cnnlab serve`, from this second process, on loopback only.

    python benchmarks/load_web.py [--run runs/demo/cnn] [--threads 1 2] [--rounds 5]
    python benchmarks/load_web.py --url http://127.0.0.1:8000     # a server you started

Without --url it starts `cnnlab serve RUN --port 0 --quiet --threads T` for each T in turn, so
settings are compared within one run. Two kinds of request, each sent `--requests` at once
(all in flight together) for `--rounds` rounds after a warm-up:
  - mnist:  a 28x28 MNIST test image as a PNG upload (multipart), its label checked;
  - canvas: the page's own traffic, a 280x280 drawn digit as JSON {"image": data URL}.
Each request opens its own connection, as separate users would. Reports errors (any non-200
or failed request), p50/p95/max latency and requests/s (the median over rounds), and the
server's CPU time per request, which other jobs on a shared machine do not inflate. Prints
them; with --record, also appends them to benchmarks/BENCHMARKS.md under "## Web" with the
machine named. Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # drawn.py: digits drawn with lines, as on the page


def get_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/demo/cnn", help="run folder to serve (default: runs/demo/cnn)")
    p.add_argument("--url", help="a server already running (default: start one per --threads)")
    p.add_argument("--threads", type=int, nargs="+", default=[1],
                   help="torch threads per request of the servers started (default: 1)")  # fmt: skip
    p.add_argument("--requests", type=int, default=200, help="concurrent requests (default: 200)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per setting (default: 5)")
    p.add_argument(
        "--record", action="store_true", help="append the figures to --out (default: print only)"
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "BENCHMARKS.md"),
                   help="the file --record appends to (default: benchmarks/BENCHMARKS.md)")  # fmt: skip
    return p.parse_args()


# ----------------------------------------------------------------------------- payloads


def payloads(n: int) -> dict[str, list[tuple[bytes, bytes, int | None]]]:
    """{kind: [(content type, body, expected label or None)]}, n of each kind."""
    from PIL import Image

    from cnnlab.data.datasets import load_dataset
    from drawn import draw_digit, encode

    test = load_dataset("mnist", "test")
    mnist = []
    for i in range(n):
        png = encode(Image.fromarray(test.images[i, 0].numpy()))
        boundary = f"cnnlab{i:08d}"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i}.png"\r\n'
                f"Content-Type: image/png\r\n\r\n"
            ).encode()
            + png
            + f"\r\n--{boundary}--\r\n".encode()
        )
        ctype = f"multipart/form-data; boundary={boundary}".encode()
        mnist.append((ctype, body, int(test.targets[i])))  # fmt: skip
    canvas = []
    for i in range(n):
        png = encode(draw_digit(i % 10, size=(280, 280), width=20))
        url = "data:image/png;base64," + base64.b64encode(png).decode()
        canvas.append((b"application/json", json.dumps({"image": url}).encode(), None))
    return {"mnist": mnist, "canvas": canvas}


# ----------------------------------------------------------------------------- load


async def post(host: str, port: int, ctype: bytes, body: bytes) -> tuple[int, bytes]:
    """One POST /api/predict on its own connection, as a separate user would send it. A bare
    HTTP/1.1 client on asyncio streams: a full client library costs more CPU per request than
    the server's prediction, and the client shares the server's two cores."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"POST /api/predict HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: %s\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                     % (host.encode(), port, ctype, len(body)) + body)  # fmt: skip
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return int(head.split()[1]), await reader.readexactly(length)
    finally:
        writer.close()


async def one_round(base: str, batch: list[tuple[bytes, bytes, int | None]]) -> dict:
    """Send every request of `batch` at once; latencies in ms, errors, answers right."""
    host, port = base.removeprefix("http://").rstrip("/").rsplit(":", 1)

    async def send(ctype, body, label):
        start = time.perf_counter()
        try:
            status, data = await asyncio.wait_for(post(host, int(port), ctype, body), 120)
            ok = status == 200
            right = ok and (label is None or json.loads(data)["label"] == str(label))
            error = None if ok else f"{status} {data[:100]!r}"
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
            ok, right, error = False, False, f"{type(e).__name__}: {e}"
        return (time.perf_counter() - start) * 1000, ok, right, error

    start = time.perf_counter()
    results = await asyncio.gather(*(send(*item) for item in batch))
    wall = time.perf_counter() - start
    ms = sorted(r[0] for r in results)
    return {
        "requests": len(batch),
        "errors": sum(not r[1] for r in results),
        "error_examples": sorted({r[3] for r in results if r[3]})[:3],
        "right": sum(r[2] for r in results),
        "p50_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))],
        "max_ms": ms[-1],
        "rps": len(batch) / wall,
        "wall_s": wall,
    }


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) a process has used so far, from /proc (0 when unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return 0.0


def measure(base: str, loads: dict, rounds: int, pid: int | None = None) -> dict[str, dict]:
    """Warm up, then `rounds` rounds per kind; the median of each figure over rounds, and the
    server's CPU time per request (a cost that other jobs on the machine do not inflate)."""
    out = {}
    for kind, batch in loads.items():
        asyncio.run(one_round(base, batch[:10]))  # warm-up: first-call costs
        cpu = cpu_seconds(pid)
        runs = [asyncio.run(one_round(base, batch)) for _ in range(rounds)]
        requests = sum(r["requests"] for r in runs)
        out[kind] = {
            "rounds": runs,
            "errors": sum(r["errors"] for r in runs),
            "requests": requests,
            "right": sum(r["right"] for r in runs),
            "server_cpu_ms": (cpu_seconds(pid) - cpu) * 1000 / requests if pid else None,
            **{k: statistics.median(r[k] for r in runs) for k in ("p50_ms", "p95_ms", "max_ms", "rps")},
        }
    return out


def start_server(run: str, threads: int) -> tuple[subprocess.Popen, str]:
    """`cnnlab serve RUN --port 0` in a subprocess; returns it and its base URL."""
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "serve", run, "--port", "0", "--quiet",
         "--threads", str(threads)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + 120
    while not any("http://" in line for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"cnnlab serve did not start: {proc.stderr.read()}")
        time.sleep(0.1)
    line = next(line for line in lines if "http://" in line)
    return proc, "http://" + line.split("http://")[1].split("/")[0]


# ----------------------------------------------------------------------------- report


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} cores"


def report(results: dict, args, torch_version: str) -> str:
    lines = [
        f"### {date.today()}: {args.requests} concurrent POST /api/predict, {args.rounds} rounds",
        "",
        f"Machine: {machine()}; torch {torch_version}; client and server on the same cores, "
        f"loopback; load average {os.getloadavg()[0]:.1f} when it ended (other jobs on the "
        "machine slow every figure). Figures are the median over rounds; errors and right "
        "answers are totals.",
        "Reproduce: `python benchmarks/load_web.py --run RUN --threads "
        f"{' '.join(map(str, args.threads))}`.",
        "",
        "| server | request | errors | p50 ms | p95 ms | max ms | requests/s | server CPU ms/request "
        "| right labels |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setting, kinds in results.items():
        for kind, r in kinds.items():
            right = f"{r['right']}/{r['requests']}" if kind == "mnist" else "n/a"
            cpu = "n/a" if r["server_cpu_ms"] is None else f"{r['server_cpu_ms']:.1f}"
            cells = [setting, kind, r["errors"], f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}",
                     f"{r['max_ms']:.0f}", f"{r['rps']:.0f}", cpu, right]  # fmt: skip
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def append_to_web_section(path: Path, entry: str) -> None:
    """Add `entry` at the end of the "## Web" section (made when missing), atomically."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    head = "## Web"
    if head not in text.splitlines():
        text = text.rstrip("\n") + (
            f"\n\n{head}\n\nThe web app under load (`benchmarks/load_web.py`): concurrent "
            "`POST /api/predict` requests from a second process against `cnnlab serve` on loopback.\n"
        )
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == head)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    block = "".join(lines[:end]).rstrip("\n") + "\n\n" + entry
    rest = "".join(lines[end:])
    text = block + ("\n" + rest if rest else "")
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)


def main() -> int:
    args = get_args()
    import torch

    loads = payloads(args.requests)
    results: dict[str, dict] = {}
    if args.url:
        results[f"{args.url} (as running)"] = measure(args.url, loads, args.rounds)
    else:
        if not Path(args.run).is_dir():
            sys.exit(f"no run folder {args.run}: `make demo`, or pass --run RUN")
        for threads in args.threads:
            proc, base = start_server(args.run, threads)
            try:
                results[f"--threads {threads}"] = measure(base, loads, args.rounds, proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    entry = report(results, args, torch.__version__)
    print(entry)
    print(json.dumps({s: {k: {m: v for m, v in r.items() if m != "rounds"} for k, r in kinds.items()}
                      for s, kinds in results.items()}, indent=1))  # fmt: skip
    if args.record:
        append_to_web_section(Path(args.out), entry)
        print(f"appended to {args.out}")
    else:
        print("not recorded: --record appends these figures to benchmarks/BENCHMARKS.md")
    errors = sum(r["errors"] for kinds in results.values() for r in kinds.values())
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
