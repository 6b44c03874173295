"""The `cnnlab` command: argparse subcommands, one module each under `cnnlab.cli`.

This package is the only place that prints and exits. Each command module exposes
`register(subparsers, common)` to add its parser; heavy imports (torch, matplotlib) happen
inside the command functions so that `cnnlab --help` stays quick. Any `CnnlabError` becomes one
line on stderr and exit code 2 (the traceback only with --debug); Ctrl-C exits 130. A warning
of a cnnlab category (say a data file rebuilt after a failed MD5 check) is one line too.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import sys
import traceback
import warnings

from cnnlab import __version__
from cnnlab.errors import CnnlabError
from cnnlab.host_memory import keep_freed_memory

# Command modules in the order `cnnlab --help` lists them.
COMMAND_MODULES = [
    "data",
    "models",
    "train",
    "runs",
    "eval",
    "compare",
    "demo",
    "predict",
    "explain",
    "export",
    "shapes",
    "pool",
    "serve",
    "bench",
]


def common_options() -> argparse.ArgumentParser:
    """Flags every subcommand accepts."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Learn and do image classification with MLPs and CNNs, starting from MNIST.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    for name in COMMAND_MODULES:
        importlib.import_module(f"cnnlab.cli.{name}").register(sub, common)
    return parser


def _rank_label() -> str:
    """' (rank R of N)' in a torchrun job, so an error names the process it came from."""
    world = os.environ.get("WORLD_SIZE", "1")
    return f" (rank {os.environ.get('RANK', '?')} of {world})" if world not in ("", "1") else ""


def machine_is_busy() -> bool:
    """Whether other work keeps (nearly) every core busy now: tasks runnable at this moment.

    Not the 1-minute load average (the fallback where /proc/loadavg is missing): it still
    counts a cnnlab command that has just finished, and the next one would train with sleeping
    threads, 1.7-2x slower on an idle machine (benchmarks/BENCHMARKS.md).
    """
    from cnnlab.machine import load_average, runnable_others

    cores = os.cpu_count() or 1
    others = runnable_others()
    if others is not None:
        return others >= cores - 0.5
    load = load_average()
    if load is None:  # no load figures on this platform: assume the machine is shared
        return True
    return load[0] >= cores - 0.5


def choose_omp_wait_policy() -> None:
    """Let OpenMP threads spin between ops on an idle machine and sleep on a busy one.

    Set before torch is imported (OpenMP reads it once); a user's own OMP_WAIT_POLICY or
    GOMP_SPINCOUNT wins. Spinning threads are faster on an idle machine; on a busy one a thread
    spins while the partner it waits for is descheduled, and sleeping threads never stall
    (the measurements: benchmarks/BENCHMARKS.md, research/omp_wait_policy.py).
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    if machine_is_busy():
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def listen_for_cancel() -> None:
    """A watched run (`--events`, the web's jobs) is cancelled with SIGINT: take it even when the
    launcher ignored SIGINT, as a non-interactive shell does for what it starts with `&`
    (children inherit an ignored signal, and Python then installs no Ctrl-C handler)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def import_torch_quietly() -> None:
    """Import torch with the cyclic garbage collector paused, then freeze what the import made.

    `import torch` builds some 180,000 long-lived objects: the collections during the import
    and the full one at exit walk them all, about 0.5 s of every command
    (benchmarks/BENCHMARKS.md). Frozen objects are skipped by later collections; module-level
    objects live as long as the process anyway. Commands that need no torch set `torch_free`.
    Nothing is done where torch is loaded already (a test, a notebook): a freeze there would
    also keep whatever garbage was waiting for the collector.
    """
    if "torch" in sys.modules:
        return
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()


def one_line_warnings(show):
    """A `warnings.showwarning` that prints cnnlab's own warnings as one line, others via `show`."""

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if category.__module__.split(".")[0] == "cnnlab":
            print(f"cnnlab: warning{_rank_label()}: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cnnlab` console script; returns the exit code."""
    choose_omp_wait_policy()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "events", None):
        listen_for_cancel()
    if not getattr(args, "torch_free", False):
        import_torch_quietly()
        keep_freed_memory()  # evaluation and explanations fault in their buffers too, not only fit
    with warnings.catch_warnings():
        warnings.showwarning = one_line_warnings(warnings.showwarning)
        code = _run(args)
    distributed = sys.modules.get("cnnlab.distributed")  # loaded only by commands that train
    if distributed is not None and distributed.left_a_group():
        distributed.exit_worker(code)  # a torchrun worker, its run saved: see exit_worker
    return code


def _run(args: argparse.Namespace) -> int:
    """Run the chosen command, turning cnnlab's errors into one line and an exit code."""
    try:
        return int(args.func(args) or 0)
    except CnnlabError as e:
        if args.debug:
            traceback.print_exc()
        print(f"cnnlab: error{_rank_label()}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cnnlab ... | head`
        return 0
