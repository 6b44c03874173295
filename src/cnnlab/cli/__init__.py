"""The `cnnlab` command: argparse subcommands, one module each under `cnnlab.cli`.

This package is the only place that prints and exits. Each command module exposes
`register(subparsers, common)` to add its parser; heavy imports (torch, matplotlib) happen
inside the command functions so that `cnnlab --help` stays quick. Any `CnnlabError` becomes one
line on stderr and exit code 2 (the traceback only with --debug); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from cnnlab import __version__
from cnnlab.errors import CnnlabError

# Command modules in the order `cnnlab --help` lists them.
COMMAND_MODULES = [
    "data", "models", "train", "eval", "compare", "demo",
    "predict", "explain", "export", "shapes", "serve", "bench",
]  # fmt: skip


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cnnlab` console script; returns the exit code."""
    # Idle OpenMP threads sleep instead of spinning. On a shared 2-core machine the spinning
    # default made an MLP epoch 19x slower with 2 threads (295 vs 5647 images/s with 1 thread);
    # passive waiting brought 2 threads back to 3438. Set before torch is imported; a user's
    # own OMP_WAIT_POLICY wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
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
