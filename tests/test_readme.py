"""Every command in README.md's ```bash blocks runs as written (a newcomer's first hour).

The lines run in README order through bash, in a temporary folder holding a copy of what they
read (COPIED), with the venv's bin/ first on PATH as after `source .venv/bin/activate`. Only
budgets are rewritten (BUDGETS); `cnnlab serve` gets `--port 0` and the curl lines the port it
printed; SKIPPED names each line that does not run here and why. Each line must exit 0, or the
code its comment names ("exits 1"), and nothing may be written outside runs/.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COPIED = ("examples",)  # what the commands read from the repository
BUDGET = "--train-subset 2000 --test-subset 500 --epochs 1"

# Appended to a matching line: small budgets for 2 cores; nothing else in a command changes. A
# line giving its own --train-subset keeps it (the lesson CNN's collapse depends on it).
BUDGETS = [
    (re.compile(r"\bcnnlab (train|compare|demo)\b(?!.*--resume)(?!.*--train-subset)"), BUDGET),
    (
        re.compile(r"\bcnnlab bench (speedrun|all)\b"),
        "--seeds 1 --train-subset 2000 --test-subset 500 --no-baseline",
    ),
]
# A line replaced by what it runs: the Makefile's target after its setup (the venv exists here).
STANDS_IN = {"make demo": "cnnlab demo"}
# Lines that do not run here, each with the reason.
SKIPPED = [
    (r"^source \.venv/bin/activate$", "the test puts the venv's bin/ first on PATH instead"),
    (r"^make test\b", "the whole suite, which this test is part of"),
    (r"^make bench\b", "minutes of benchmarks; `cnnlab bench` and --record are tested in test_bench.py"),
    (r"^make (lint|serve|fuzz|notebook)\b", "development targets, run by `make` itself, not the reader"),
    (r"^torchrun --nnodes", "needs two machines"),
    (r"^pip install|^jupyter lab", "installs from the network / opens an interactive server"),
]
CUDA_ONLY = re.compile(r"--device cuda\b")
EXIT_CODE = re.compile(r"\bexits? (\d+)\b")


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment) of a shell line: `#` outside quotes, at the start or after a space."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def readme_commands(text: str) -> list[tuple[str, str]]:
    """(command, comment) of every line of every ```bash block, continuations joined."""
    commands: list[tuple[str, str]] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        pending = ""
        for raw in block.splitlines():
            command, comment = split_comment(raw)
            if command.endswith("\\"):
                pending += command[:-1].strip() + " "
                continue
            command = (pending + command.strip()).strip()
            pending = ""
            if command:
                commands.append((command, comment))
    return commands


def skip_reason(command: str) -> str | None:
    """Why a README line does not run here, or None."""
    for pattern, reason in SKIPPED:
        if re.search(pattern, command):
            return reason
    if command.startswith("curl ") and shutil.which("curl") is None:
        return "curl is not installed"
    if CUDA_ONLY.search(command):
        import torch

        if not torch.cuda.is_available():
            return "needs a CUDA GPU"
    return None


def with_budget(command: str) -> str:
    """The command with a small budget appended where it trains."""
    command = STANDS_IN.get(command, command)
    for pattern, budget in BUDGETS:
        if pattern.search(command):
            return f"{command} {budget}"
    return command


def expected_code(comment: str) -> int:
    match = EXIT_CODE.search(comment)
    return int(match.group(1)) if match else 0


def test_every_cnnlab_line_parses_with_its_flags():
    # fast: a renamed flag or command is caught without running anything
    from cnnlab.cli import build_parser

    parser = build_parser()
    lines = [c for c, _ in readme_commands(README.read_text()) if c.startswith("cnnlab ")]
    assert len(lines) > 20
    for command in lines:
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit:
            pytest.fail(f"README: {command!r} is not a valid cnnlab command line")


FENCE = re.compile(r"^\s*```")
FENCE_LINE = re.compile(r"^\s*```[\w+-]*\s*$")  # an opening ```lang or a bare closing ```


def bad_fences(text: str) -> list[str]:
    """Fence lines a Markdown renderer reads otherwise than meant: text after a closing ```
    does not close the block, so the prose below it renders as code."""
    return [line for line in text.splitlines() if FENCE.match(line) and not FENCE_LINE.match(line)]


def test_every_code_block_in_the_docs_is_fenced_cleanly():
    docs = [p for p in ROOT.rglob("*.md") if not {".venv", "node_modules", "runs"} & set(p.parts)]
    assert README in docs and len(docs) > 3
    for path in docs:
        text = path.read_text()
        assert bad_fences(text) == [], f"{path.relative_to(ROOT)}: text on a fence line"
        assert sum(1 for line in text.splitlines() if FENCE.match(line)) % 2 == 0, path
    assert bad_fences("```bash\nx\n``` then prose\n") == ["``` then prose"]


def test_comments_and_continuations_are_read():
    text = "```bash\ncnnlab a '#x' \\\n    --b 1   # exits 1\n# only a comment\n```\n"
    assert readme_commands(text) == [("cnnlab a '#x' --b 1", "exits 1")]
    assert expected_code("nothing fits: exits 1") == 1 and expected_code("12 exits") == 0
    assert with_budget("make demo") == f"cnnlab demo {BUDGET}"
    assert with_budget("cnnlab train --resume runs/cnn") == "cnnlab train --resume runs/cnn"
    assert with_budget("cnnlab train --train-subset 64") == "cnnlab train --train-subset 64"


class Server:
    """`cnnlab serve ... --port 0` in the background; knows the port it printed."""

    def __init__(self, command: str, cwd: Path, env: dict):
        command = re.sub(r"--port \d+", "--port 0", command)
        command += "" if "--port" in command else " --port 0"
        self.command, self.lines = command, []
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
        deadline = time.monotonic() + 120
        while not any("http://" in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{command}: did not start: {''.join(self.lines)[-2000:]}")
            time.sleep(0.1)
        printed = next(line for line in self.lines if "http://" in line)
        self.port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", printed).group(1))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file outside runs/."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).parts[0] != "runs"
    }


def run_line(command: str, comment: str, work: Path, env: dict, server: Server | None) -> None:
    """Run one README line and check its exit code (and a curl line's JSON answer)."""
    if command.startswith("curl "):
        assert server is not None, f"{command}: no `cnnlab serve` line before it"
        command = command.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    done = subprocess.run(
        ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    out = f"{command}\nstdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}"
    assert done.returncode == expected_code(comment), f"exit {done.returncode}: {out}"
    if command.startswith("curl "):
        answer = json.loads(done.stdout)
        assert "error" not in answer, out


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path, real_root):
    work = tmp_path / "clone"
    work.mkdir()
    for name in COPIED:
        subprocess.run(["cp", "-r", str(ROOT / name), str(work / name)], check=True)
    bin_dir = str(Path(sys.executable).parent)
    src = str(ROOT / "src")
    env = dict(
        os.environ,
        PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        VIRTUAL_ENV=str(Path(bin_dir).parent),
        PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        CNNLAB_DATA=str(real_root),
    )
    before = snapshot(work)
    server: Server | None = None
    ran = 0
    try:
        for command, comment in readme_commands(README.read_text()):
            if skip_reason(command):
                continue
            command = with_budget(command)
            if command.startswith("cnnlab serve"):
                if server:
                    server.stop()
                server = Server(command, work, env)
            else:
                run_line(command, comment, work, env, server)
            ran += 1
    finally:
        if server:
            server.stop()
    assert ran > 20
    assert snapshot(work) == before, "a README command wrote outside runs/"
