"""Training jobs started from the Train page: each one a `cnnlab train` child process.

A job's settings are checked as the command line checks them (`cnnlab.config.make_config`),
then turned into `python -m cnnlab train ... --out RUNS/NAME --events FILE` (under torchrun
with `nproc`). At most `max_jobs` run at once; up to `queue` more wait, beyond that the server
answers 429. A watcher thread tails the job's events file (JSON lines, `cnnlab.cli.events`)
into the job's progress, which the routes relay. Cancelling sends SIGINT to the child's process
group: training stops at once and the run folder keeps its last epoch, resumable
(`{"resume": NAME}` runs `cnnlab train --resume`). When the server stops, running jobs are
cancelled the same way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.web.job_args import job_argv

JOBS_DIR = ".jobs"  # under the runs folder: each job's events file and log (not a run folder)
POLL_S = 0.2  # how often a watcher reads its job's events file
STOP_WAIT_S = 60.0  # a cancelled child gets this long to save its run before it is killed
MAX_EVENTS = 4000  # events kept per job (the epoch ends and the final line are always kept)
FINISHED = ("done", "failed", "cancelled")
KEEP_FINISHED = 50  # finished jobs a server remembers (their run folders stay, listed in Runs)


class QueueFull(CnnlabError):
    """More jobs waiting than the server's queue holds (answered 429)."""


class JobNotFound(CnnlabError):
    """A job id this server does not know (answered 404)."""


@dataclass(frozen=True)
class JobSettings:
    """How a server runs jobs. `token`: needed by the job API (None: loopback, no token);
    `data_dir`: where image-folder datasets may be (None: none); `nproc`: torchrun processes."""

    token: str | None = None
    max_jobs: int = 1
    queue: int = 4
    data_dir: Path | None = None
    nproc: int | None = None
    data_root: Path | None = None


@dataclass
class Job:
    """One training job and what its events said so far."""

    id: str
    run: str
    argv: list[str]
    folder: Path
    events_path: Path
    log_path: Path
    state: str = "queued"
    error: str | None = None
    progress: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    events: list = field(default_factory=list)
    created: float = field(default_factory=time.time)
    started: float | None = None
    proc: subprocess.Popen | None = None
    cancelling: bool = False

    @property
    def ended(self) -> bool:
        """True once the final `state` event is in `events`."""
        return bool(self.events) and self.events[-1].get("event") == "state"

    def end(self, state: str, error: str | None = None) -> None:
        """Set the final state and add the final `state` event."""
        self.state, self.error = state, error
        self.events.append({"event": "state", "state": state, "error": error})

    def public(self) -> dict:
        """GET /api/jobs/ID's answer."""
        return {
            "id": self.id,
            "run": self.run,
            "state": self.state,
            "progress": self.progress,
            "metrics": self.metrics,
            "error": self.error,
            "resumable": self.state in ("cancelled", "failed")
            and (self.folder / "config.json").is_file(),
        }


def _one_line(text: str, limit: int = 300) -> str:
    """Whitespace collapsed, cut to `limit` characters."""
    return " ".join(text.split())[:limit]


def last_error_line(log_path: Path) -> str | None:
    """The child's last `cnnlab: error: ...` line (or its last line) from its log."""
    try:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    errors = [ln for ln in lines if ln.startswith("cnnlab: error")]
    return _one_line((errors or lines or [""])[-1]) or None


class JobManager:
    """The jobs of one server (thread-safe): submit, cancel, list, and stop them all.

    Args:
        runs_dir: the server's runs folder (None: jobs are refused, 400).
        settings: limits and options (JobSettings).
    """

    def __init__(self, runs_dir: Path | None, settings: JobSettings):
        if settings.max_jobs < 1 or settings.queue < 0:
            raise ConfigError(
                f"--max-jobs must be >= 1 and --queue >= 0, not {settings.max_jobs}, {settings.queue}"
            )
        self.runs_dir, self.settings = runs_dir, settings
        self.jobs: dict[str, Job] = {}
        self.closing = False
        self._lock = threading.Lock()

    def submit(self, body: object) -> Job:
        """Check a job request, queue it and start it when a slot is free.

        Raises:
            ConfigError: a bad field (its name is in the message). QueueFull: the queue is full.
        """
        if self.runs_dir is None:
            raise ConfigError("this server has no runs folder: start it with `cnnlab serve --runs DIR`")
        with self._lock:
            if self.closing:
                raise QueueFull("the server is stopping; start the job again later")
            waiting = sum(j.state == "queued" for j in self.jobs.values())
            running = sum(j.state == "running" for j in self.jobs.values())
            if running >= self.settings.max_jobs and waiting >= self.settings.queue:
                raise QueueFull(f"{waiting} jobs are waiting already (--queue {self.settings.queue})")
            taken = {j.run for j in self.jobs.values() if j.state not in FINISHED}
            run, argv = job_argv(body, self.runs_dir, self.settings, taken)
            job_id = uuid.uuid4().hex[:12]
            folder = self.runs_dir / JOBS_DIR
            job = Job(
                job_id,
                run,
                argv,
                self.runs_dir / run,
                folder / f"{job_id}.jsonl",
                folder / f"{job_id}.log",
            )
            job.argv += ["--events", str(job.events_path)]
            self.jobs[job_id] = job
            self._forget_old()
            self._pump()
        return job

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond KEEP_FINISHED (called with the lock held)."""
        finished = sorted(
            (j for j in self.jobs.values() if j.state in FINISHED), key=lambda j: j.created
        )
        for job in finished[: max(len(finished) - KEEP_FINISHED, 0)]:
            del self.jobs[job.id]

    def get(self, job_id: str) -> Job:
        """The job called job_id; JobNotFound when none is."""
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise JobNotFound(f"no job {job_id[:40]!r}; GET /api/jobs lists them")
        return job

    def listing(self) -> list[dict]:
        """Every job of this server, newest first."""
        return [j.public() for j in sorted(self.jobs.values(), key=lambda j: -j.created)]

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job, or stop a running one with SIGINT (its run stays resumable)."""
        job = self.get(job_id)
        with self._lock:
            if job.state == "queued":
                job.end("cancelled")
            elif job.state == "running" and not job.cancelling:
                job.cancelling = True
                _interrupt(job.proc)
        return job

    def _pump(self) -> None:
        """Start queued jobs while slots are free (called with the lock held)."""
        running = sum(j.state == "running" for j in self.jobs.values())
        for job in sorted(self.jobs.values(), key=lambda j: j.created):
            if running >= self.settings.max_jobs or self.closing:
                break
            if job.state == "queued":
                self._start(job)
                running += 1

    def _start(self, job: Job) -> None:
        """Launch the child process and its watcher thread."""
        job.events_path.parent.mkdir(parents=True, exist_ok=True)
        job.events_path.write_text("")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(job.log_path, "wb") as log:
            try:
                job.proc = subprocess.Popen(
                    job.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C at the server's terminal is the server's to relay
                    env=env,
                )
            except OSError as e:
                job.end("failed", f"cannot start {job.argv[0]}: {e}")
                return
        job.state, job.started = "running", time.time()
        threading.Thread(target=self._watch, args=(job,), name=f"job-{job.id}", daemon=True).start()

    def _watch(self, job: Job) -> None:
        """Tail the events file until the child exits, then settle the job's state."""
        offset, buffer = 0, b""
        while True:
            code = job.proc.poll()
            try:
                with open(job.events_path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except OSError:
                chunk = b""
            offset += len(chunk)
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                self._apply(job, line)
            if code is not None:
                break
            time.sleep(POLL_S)
        with self._lock:
            self._settle(job, code)
            self._pump()

    def _apply(self, job: Job, line: bytes) -> None:
        """One event line into the job's progress, metrics and event list."""
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("event")
        update_progress(job, kind, event)
        if kind != "step" or len(job.events) < MAX_EVENTS:
            job.events.append(event)

    def _settle(self, job: Job, code: int) -> None:
        """The job's final state from the child's exit code and last event."""
        last = job.events[-1] if job.events else {}
        if code == 0 and last.get("event") == "done":
            job.end("done")
        elif job.cancelling or code in (130, -signal.SIGINT):
            job.end("cancelled")
        else:
            error = last.get("error") if last.get("event") == "failed" else None
            job.end(
                "failed", error or last_error_line(job.log_path) or f"cnnlab train exited with {code}"
            )

    def shutdown(self, wait_s: float = STOP_WAIT_S) -> None:
        """Cancel every job: queued ones at once, running ones by SIGINT; kill any still
        running after `wait_s`."""
        with self._lock:
            self.closing = True
            for job in self.jobs.values():
                if job.state == "queued":
                    job.end("cancelled")
                elif job.state == "running":
                    job.cancelling = True
                    _interrupt(job.proc)
        deadline = time.monotonic() + wait_s
        for job in list(self.jobs.values()):
            if job.proc is not None and job.proc.poll() is None:
                try:
                    job.proc.wait(max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    _signal_group(job.proc, signal.SIGKILL)
                    job.proc.wait()


def update_progress(job: Job, kind: str | None, event: dict) -> None:
    """Progress (epoch, step, loss, accuracy, images/s, ETA) and metrics from one event."""
    p = job.progress
    if kind == "start":
        p.update(start_epoch=event.get("start_epoch", 0), steps=event.get("steps"), started=time.time())
        p["epochs"] = (event.get("config") or {}).get("epochs")
    elif kind == "epoch_start":
        p.update(epoch=event.get("epoch"), epochs=event.get("epochs"), steps=event.get("steps"), step=0)
    elif kind == "step":
        p.update({k: event.get(k) for k in ("epoch", "step", "steps", "loss", "acc", "images_per_s")})
        p["eta_s"] = _eta(p)
    elif kind == "epoch_end":
        row = {k: v for k, v in event.items() if k != "event"}
        job.metrics.append(row)
        p.update(
            epoch=event.get("epoch"), step=p.get("steps"), eta_s=_eta(p, done_epochs=event.get("epoch"))
        )


def _eta(p: dict, done_epochs: int | None = None) -> float | None:
    """Seconds left, from the time the steps done so far took."""
    try:
        steps, first, epochs = int(p["steps"]), int(p.get("start_epoch") or 0), int(p["epochs"])
        done = (
            (done_epochs - first) * steps
            if done_epochs is not None
            else (int(p["epoch"]) - first) * steps + int(p["step"])
        )
        total = (epochs - first) * steps
        elapsed = time.time() - float(p["started"])
    except (KeyError, TypeError, ValueError):
        return None
    return elapsed * (total - done) / done if done > 0 else None


def _signal_group(proc: subprocess.Popen | None, sig: int) -> None:
    """Send sig to the child's process group (torchrun's workers too)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _interrupt(proc: subprocess.Popen | None) -> None:
    """Ctrl-C for the child: it saves its last epoch and exits 130."""
    _signal_group(proc, signal.SIGINT)
