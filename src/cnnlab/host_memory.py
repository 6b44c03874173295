"""Keep freed CPU memory in the process, instead of handing it back to the kernel after each use.

glibc's malloc serves large blocks with mmap and returns them with munmap, and trims the heap's
free top back to the kernel once it passes a threshold that it tunes from the sizes it has seen.
A training step allocates and frees the same activation buffers every step, so for a net with
large feature maps (the published recipe's 28x28x24 maps, `cnn`, `best`) the kernel zeroes and
maps the same pages again each step: page faults and system time that also vary from run to run
as the threshold drifts (figures: benchmarks/BENCHMARKS.md, "Freed memory kept"). Fixing both
thresholds makes freed blocks stay in the heap for the next step. Memory use stays at the
step's peak, which a training process reaches anyway. The same holds for an evaluation's batches
(`cnnlab eval`), so every `cnnlab` command that computes with torch sets it too.
"""

from __future__ import annotations

import os

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed: blocks below 32 MiB come from the heap
TRIM_THRESHOLD = 1 << 30  # return the heap's free top only past 1 GiB

_kept: bool | None = None  # once per process


def user_tuned_malloc() -> bool:
    """Whether the environment already tunes malloc (then its settings are left as they are)."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    preload = os.environ.get("LD_PRELOAD", "")
    return (
        "glibc.malloc" in tunables
        or any(k.startswith("MALLOC_") for k in os.environ)
        or any(lib in preload for lib in ("jemalloc", "tcmalloc", "mimalloc"))
    )


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True when they are set now.

    Does nothing (False) off glibc, or when the environment tunes malloc itself (GLIBC_TUNABLES
    with glibc.malloc.*, MALLOC_* variables, or a preloaded jemalloc/tcmalloc/mimalloc).
    """
    global _kept
    if _kept is None:
        _kept = _set_thresholds()
    return _kept


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")  # instant, unlike libc_ver
    except (AttributeError, ValueError, OSError):  # not a glibc system
        return False


def _set_thresholds() -> bool:
    if not _glibc() or user_tuned_malloc():
        return False
    import ctypes  # here: the torch-free commands never need it

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success, 0 for a value it refuses
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
