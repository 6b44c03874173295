"""Scale-out with torch.distributed: the process group that `torchrun` sets up, and DDP.

`torchrun --nproc_per_node N -m cnnlab train ...` starts N copies of the command and gives
each WORLD_SIZE, RANK, LOCAL_RANK and a rendezvous address in its environment. `setup` joins
that group (gloo for CPU tensors, NCCL for CUDA ones, chosen from the training device) with a
timeout, so a rank that stops answering fails the job instead of hanging it. Outside torchrun
every helper here is a no-op and `setup` returns a one-process context, so the training code
reads the same either way.

What each process does (see cnnlab.train.fit): the same seed builds the same model (DDP
broadcasts rank 0's weights anyway); each epoch's permutation is the same on every rank, and
rank r takes every world_size-th sample of it; DDP averages the gradients, so a step sees the
whole global batch; metric sums are all-reduced; only rank 0 writes the run folder and reports
progress. This module never prints.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NoReturn

import torch
from torch import nn

from cnnlab.errors import ConfigError

# Seconds a collective may wait for the other ranks before the job fails: long enough for rank
# 0 to fetch a dataset while the others wait, short enough that a dead peer on another machine
# ends the job in minutes (torchrun itself stops the others at once when a local rank exits).
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job; world_size 1 means not distributed."""

    rank: int = 0  # global rank, 0 .. world_size - 1
    world_size: int = 1
    local_rank: int = 0  # rank on this machine: picks the GPU and who fetches data first
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # "gloo" or "nccl" when distributed

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and reports progress."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={value!r} is not an integer; "
            "launch with torchrun, which sets it"
        ) from None


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) gave this process a world of several ranks."""
    return _env_int("WORLD_SIZE", 1) > 1


def env_rank() -> int:
    """This process's global rank: from the live process group, else $RANK, else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return _env_int("RANK", 0)


def is_main_process() -> bool:
    """True on rank 0 and in every non-distributed process."""
    return env_rank() == 0


def _rank_device(device: torch.device, local_rank: int, world_size: int) -> torch.device:
    """The device of this rank: cuda -> cuda:LOCAL_RANK; cpu stays cpu."""
    if device.type == "mps":
        raise ConfigError(
            "distributed training does not run on mps (torch has no MPS process "
            "group); use --device cpu under torchrun"
        )
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise ConfigError(
            f"--device {device} pins all {world_size} processes to one GPU; use "
            "--device cuda and each process takes the GPU of its LOCAL_RANK"
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"torchrun started process {local_rank} on this machine but it has "
            f"only {count} CUDA GPU(s): use --nproc_per_node {count} (or --device "
            "cpu)"
        )
    return torch.device("cuda", local_rank)


def setup(device: torch.device, timeout_s: float | None = None) -> DistContext:
    """Join torchrun's process group once (later calls reuse it); a no-op outside torchrun.

    Args:
        device: the resolved training device; under torchrun "cuda" becomes cuda:LOCAL_RANK.
        timeout_s: how long a collective waits for the other ranks (default DEFAULT_TIMEOUT_S).

    Returns:
        This process's DistContext (world_size 1 when not launched by torchrun).

    Raises:
        ConfigError: mps, a device pinned to one GPU, more processes than GPUs, a bad timeout.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistContext(device=device)
    if timeout_s is not None and not timeout_s > 0:
        raise ConfigError(f"--dist-timeout must be a positive number of seconds, not {timeout_s}")
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = _rank_device(device, local_rank, world_size)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(
            backend,
            timeout=timedelta(seconds=timeout_s or DEFAULT_TIMEOUT_S),
            device_id=device if device.type == "cuda" else None,
        )
    else:
        backend = torch.distributed.get_backend()
        rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return DistContext(
        rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend
    )


_left_a_group = False  # set by cleanup: this process's gloo/NCCL threads may still be running


def cleanup() -> None:
    """Leave the process group (if any) once training is over."""
    global _left_a_group
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    # all ranks leave together, so none tears the group down while another still talks to it
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    _left_a_group = True


def left_a_group() -> bool:
    """True once `cleanup` has left a process group in this process."""
    return _left_a_group


def exit_worker(code: int) -> NoReturn:
    """End a torchrun worker whose work is saved, without the interpreter's finalisation.

    gloo's worker threads outlive `destroy_process_group` and free a finished collective's
    tensors a moment after it returns. A thread that needs the GIL for that once finalisation
    has begun is stopped inside a destructor and the process aborts ("terminate called without
    an active exception", SIGABRT: a core dump showed ProcessGroupGloo::runLoop freeing an
    AsyncBarrierWork while Py_FinalizeEx ran), so torchrun reports a saved run as failed.
    `cnnlab.cli.main` calls it after the command, its last lines and `--events` line written;
    only the streams need a flush.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (no-op outside a distributed job)."""
    if ctx.enabled:
        torch.distributed.barrier()


@contextlib.contextmanager
def local_main_first(ctx: DistContext) -> Iterator[None]:
    """Run the block on LOCAL_RANK 0 of each machine first, then on the others.

    For fetching a dataset into the shared cache: one process per machine writes the files,
    the others then read them instead of writing the same files at the same time.
    """
    first = ctx.local_rank == 0
    if not first:
        barrier(ctx)
    yield
    if first:
        barrier(ctx)


def sum_across_ranks(values: Sequence[float | torch.Tensor], device: torch.device) -> list[float]:
    """Element-wise sums of `values` over all ranks (the values themselves without a group).

    One all-reduce of a float64 vector on `device` (NCCL needs it on the GPU): metric sums and
    counts (loss * n, correct, n) become the job's, so every rank computes the same means.
    """
    floats = [float(v) for v in values]
    if not (torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
        return floats
    packed = torch.tensor(floats, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(packed, op=torch.distributed.ReduceOp.SUM)
    return packed.tolist()


def wrap_model(model: nn.Module, ctx: DistContext, *, sync_bn: bool = False) -> nn.Module:
    """DistributedDataParallel around `model` (on ctx.device); the model itself when alone.

    Args:
        model: the model, already on ctx.device.
        ctx: from `setup`.
        sync_bn: replace BatchNorm layers by SyncBatchNorm, so batch statistics come from the
            whole global batch instead of each process's share (CUDA only: torch's
            SyncBatchNorm does not run on CPU). Ignored in a one-process job.

    Returns:
        The module to train; `unwrap` gives back the plain model to evaluate and save.
    """
    if not ctx.enabled:
        return model
    if sync_bn:
        if ctx.device.type != "cuda":
            raise ConfigError(
                "--sync-bn needs CUDA GPUs: torch's SyncBatchNorm does not run on "
                f"{ctx.device.type}; train without --sync-bn (each process then "
                "normalises its own share of the batch)"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def broadcast_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    With plain BatchNorm each rank's running statistics drift apart during an epoch; after
    this every rank evaluates the model rank 0 saves.
    """
    if not ctx.enabled:
        return
    for buffer in unwrap(model).buffers():
        torch.distributed.broadcast(buffer, src=0)


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """The RNG seed of rank > 0 for an epoch: its own dropout masks, replayable on resume."""
    return seed * 1_000_003 + epoch * 1_009 + rank * 7_919 + 104_729


def record_error(error: BaseException) -> None:
    """Write this rank's error where torchrun looks for it, so its summary names the cause.

    torchrun sets TORCHELASTIC_ERROR_FILE for each worker; outside torchrun this does nothing.
    Call it inside the `except` block that caught `error`.
    """
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    from torch.distributed.elastic.multiprocessing.errors import get_error_handler

    with contextlib.suppress(OSError):
        get_error_handler().record_exception(error)
