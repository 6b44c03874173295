"""Memory amplification check of the web app: parallel uploads of a small PNG that decodes large,
against a `cnnlab serve` this script starts on 127.0.0.1 and stops at the end.

    python benchmarks/load_web_bomb.py [--run RUN] [--parallel 24] [--sides 4096 2048]

For each side S, an S x S RGBA PNG of black lines on white (about 94 KB at 4096: it compresses
well, decoded it is 64 MB) is sent once alone, then `--parallel` times at once, each on its own
connection. Reported per phase: the status codes, failed connections, the server's peak
resident memory (VmHWM of /proc/PID/status, reset between phases through clear_refs) above its
resident memory before the phase, its CPU time, and the wall time. Without --run it trains a
throwaway MLP run first (`cnnlab train --model mlp --epochs 1 --train-subset 2000`). Sends at
most 2 * (1 + parallel) * len(sides) uploads, to loopback only, and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
MAX_PARALLEL = 64


def get_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="run folder to serve (default: train a throwaway MLP run)")
    p.add_argument("--parallel", type=int, default=24, help="uploads at once (default: 24, at most 64)")
    p.add_argument(
        "--sides",
        type=int,
        nargs="+",
        default=[4096, 2048],
        help="image sides to send, one phase each (default: 4096 2048)",
    )
    p.add_argument("--timeout", type=float, default=120, help="per request, seconds (default: 120)")
    return p.parse_args()


def lines_png(side: int) -> bytes:
    """A side x side RGBA PNG of eight black lines on white."""
    img = Image.new("RGBA", (side, side), "white")
    draw = ImageDraw.Draw(img)
    for i in range(8):
        draw.line([(0, i * side // 8), (side - 1, side - 1 - i * side // 8)], fill="black", width=9)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def train_run(folder: Path) -> Path:
    """A throwaway MLP run, trained in seconds."""
    out = folder / "run"
    cmd = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--train-subset",
        "2000",
        "--quiet",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def start_server(run: Path) -> tuple[subprocess.Popen, str]:
    """`cnnlab serve RUN --port 0` on loopback; returns the process and its base URL."""
    cmd = [
        sys.executable,
        "-m",
        "cnnlab",
        "serve",
        str(run),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "http://127.0.0.1:" not in line:
        proc.kill()
        raise SystemExit(f"cnnlab serve did not start: {line!r}")
    return proc, "http://" + line.split("http://")[1].split("/")[0]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_all(base: str, png: bytes, n: int, timeout: float) -> tuple[Counter, int]:
    """n uploads at once, each on its own connection; (status counts, failed connections)."""

    async def one() -> int | None:
        async with httpx.AsyncClient(timeout=timeout) as c:
            try:
                r = await c.post(f"{base}/api/predict", files={"file": ("lines.png", png, "image/png")})
            except httpx.HTTPError:
                return None
            return r.status_code

    codes = await asyncio.gather(*(one() for _ in range(n)))
    return Counter(c for c in codes if c is not None), sum(c is None for c in codes)


def phase(proc: subprocess.Popen, base: str, png: bytes, n: int, timeout: float) -> dict:
    """One burst of n uploads, measured on the server process."""
    try:  # "5" resets the peak resident size to the current one
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
    except OSError:
        pass
    before, cpu0, t0 = proc_status(proc.pid), cpu_seconds(proc.pid), time.perf_counter()
    codes, failed = asyncio.run(send_all(base, png, n, timeout))
    wall, after = time.perf_counter() - t0, proc_status(proc.pid)
    return {
        "n": n,
        "codes": dict(sorted(codes.items())),
        "failed": failed,
        "rss_before_mb": before["VmRSS"] / 2**20,
        "peak_mb": after["VmHWM"] / 2**20,
        "peak_growth_mb": (after["VmHWM"] - before["VmRSS"]) / 2**20,
        "cpu_s": cpu_seconds(proc.pid) - cpu0,
        "wall_s": wall,
    }


def main() -> int:
    args = get_args()
    if not 1 <= args.parallel <= MAX_PARALLEL:
        raise SystemExit(f"--parallel must be 1..{MAX_PARALLEL}, not {args.parallel}")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else train_run(Path(tmp))
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            platform.processor(),
        )
        print(f"# {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}")
        for side in args.sides:
            png = lines_png(side)
            proc, base = start_server(run)
            try:
                asyncio.run(send_all(base, lines_png(64), 1, args.timeout))  # warm-up
                for n in (1, args.parallel):
                    r = phase(proc, base, png, n, args.timeout)
                    print(
                        f"{side}x{side} RGBA PNG ({len(png) / 1024:.0f} KB) x {n} at once: "
                        f"codes {r['codes']}, failed connections {r['failed']}, server RSS "
                        f"{r['rss_before_mb']:.0f} MB -> peak {r['peak_mb']:.0f} MB "
                        f"(+{r['peak_growth_mb']:.0f} MB), CPU {r['cpu_s']:.2f} s, "
                        f"wall {r['wall_s']:.2f} s",
                        flush=True,
                    )
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
