"""Which device trains, how its CPU side is set up, and whether bfloat16 autocast pays off."""

from __future__ import annotations

import contextlib
import os

import torch

from cnnlab.errors import ConfigError
from cnnlab.host_memory import keep_freed_memory
from cnnlab.machine import cpu_flags


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but torch sees no CUDA GPU; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps requested but this torch has no MPS; use --device cpu")
    return torch.device(name)


def prepare_training_process(threads: int | None) -> None:
    """Before training: `threads` CPU threads (None: torch's default), and freed activation
    memory kept for the next step rather than returned to the kernel (cnnlab.host_memory)."""
    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()


# oneDNN ISA limits (ONEDNN_MAX_CPU_ISA) below the bf16 instructions: bf16 is emulated there
ONEDNN_BELOW_BF16 = {
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
}


def _onednn_isa_cap() -> str:
    """The instruction set oneDNN is held to (ONEDNN_MAX_CPU_ISA, upper case); "" when free."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()


def bf16_supported(device: torch.device) -> bool:
    """bfloat16 autocast pays off on CUDA, and on CPUs with AVX512-BF16 or AMX whose kernels
    may use them: held to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) the same CPU emulates
    bf16, far slower than float32 (benchmarks/BENCHMARKS.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    flags = cpu_flags()
    if not ("avx512_bf16" in flags or "amx_bf16" in flags):
        return False
    if _onednn_isa_cap() in ONEDNN_BELOW_BF16:
        return False
    return torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "NO AVX", "AVX2")


def use_bf16(setting: bool | None, device: torch.device) -> bool:
    """Whether a run trains in bfloat16: `setting` True where the hardware has it, False never,
    None (the `fast` recipe's) only where it pays even for a small net: CUDA, and CPUs whose
    oneDNN may use AMX tiles. With AVX512-BF16 alone the casts cost a tiny net more than its
    convolutions gain (benchmarks/BENCHMARKS.md, "A third CPU")."""
    if setting is not None:
        return setting and bf16_supported(device)
    if device.type == "cuda":
        return bf16_supported(device)
    isa_cap = _onednn_isa_cap()
    amx = "amx_bf16" in cpu_flags() and (not isa_cap or "AMX" in isa_cap or isa_cap == "ALL")
    return amx and bf16_supported(device)


def autocast(device: torch.device, enabled: bool, cache: bool = True):
    """bfloat16 autocast on `device` when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    # a CUDA graph must not keep autocast's cache of cast weights (stale after each step)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
