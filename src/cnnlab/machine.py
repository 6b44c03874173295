"""The machine a run or a benchmark ran on: CPU model and flags, cores, load average, torch.

The one place that reads /proc/cpuinfo. Timings and the choice of kernels (bf16 autocast needs
AVX512-BF16 or AMX on a CPU) mean nothing without the machine, so results carry `machine_info()`
and reports `machine_description()`. No torch at import: only `machine_info` asks torch.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# CPU flags that decide which kernels torch can use.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the CPU.

    Attributes:
        name: the model name ("AMD EPYC 7B13"); off Linux, what `platform` knows.
        family: the CPU family ("25" for AMD Zen 3 and 4), or None when unknown.
        model: the model number within the family ("1": Milan), or None when unknown.
        flags: every feature flag the kernel lists (empty when unknown).
    """

    name: str
    family: str | None
    model: str | None
    flags: frozenset[str]


@functools.cache
def cpu_info() -> CpuInfo:
    """The CPU's model name, family, model number and flags (read once per process).

    Returns:
        A `CpuInfo`; off Linux only the name from `platform`, with no family and no flags.
    """
    name, fields, flags = platform.processor() or platform.machine(), {}, frozenset()
    try:
        text = CPUINFO.read_text()
    except OSError:  # not Linux: the model from platform is all we have
        return CpuInfo(name, None, None, flags)
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name":
            name = value
        elif key == "flags":
            flags = frozenset(value.split())
        elif key in ("cpu family", "model"):
            fields[key] = value
    return CpuInfo(name, fields.get("cpu family"), fields.get("model"), flags)


def cpu_flags() -> set[str]:
    """Every CPU feature flag ("avx2", "avx512_bf16", ...); empty when the OS does not say."""
    return set(cpu_info().flags)


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, rounded to 0.01; None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def runnable_others(samples: int = 9, gap_s: float = 0.001) -> float | None:
    """Tasks runnable on the machine right now besides this one: the median of a few reads of
    /proc/loadavg's running count ~1 ms apart; None where there is no /proc/loadavg."""
    counts = []
    for _ in range(samples):
        try:
            running = Path("/proc/loadavg").read_text().split()[3].split("/")[0]
        except (OSError, IndexError):
            return None
        counts.append(int(running) - 1)  # the reader itself is running
        time.sleep(gap_s)
    return float(sorted(counts)[len(counts) // 2])


def machine_description() -> str:
    """One line naming the CPU, its cores and the flags that matter for torch's kernels.

    Returns:
        For example "AMD EPYC 7B13 (family 25 model 1), 2 cores, avx2 fma".
    """
    cpu = cpu_info()
    family = f" (family {cpu.family} model {cpu.model})" if cpu.family is not None else ""
    flags = " ".join(f for f in RELEVANT_FLAGS if f in cpu.flags) or "no avx2/avx512 flags"
    return f"{cpu.name}{family}, {os.cpu_count()} cores, {flags}"


def machine_info() -> dict:
    """The machine as a JSON-ready dict, for every benchmark result.

    Returns:
        cpu, cpu_family and model (when known), cores, the relevant flags, torch's CPU kernel
        level, torch version and threads, the OpenMP wait policy, Python, the load average and
        the GPU if there is one.
    """
    import torch

    cpu = cpu_info()
    known = {"cpu_family": cpu.family, "model": cpu.model}
    info = {
        "cpu": cpu.name,
        **{key: value for key, value in known.items() if value is not None},
        "cores": os.cpu_count(),
        "flags": [f for f in RELEVANT_FLAGS if f in cpu.flags],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        # how idle OpenMP threads wait (cnnlab.cli.choose_omp_wait_policy): it moves timings
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (spin, then sleep)"),
        "python": platform.python_version(),
        "load_average": load_average(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
