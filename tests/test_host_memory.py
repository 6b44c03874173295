"""Freed CPU memory stays in a training process (cnnlab.host_memory) unless the user tunes malloc."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from cnnlab import host_memory

# Four 28 MB buffers a step, freed together: more than glibc's self-tuned trim threshold
# (twice the largest block it has seen), so by default the heap is handed back, step after step
STEPS = r"""
import json, resource, sys, torch
from cnnlab import host_memory
kept = host_memory.keep_freed_memory() if sys.argv[1] == "keep" else None
torch.set_num_threads(1)
def step():
    bufs = [torch.empty(7_000_000).fill_(1.0) for _ in range(4)]
    del bufs
for _ in range(4):  # the heap grows to the step's peak
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):
    step()
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    # glibc's self-tuning makes the default vary from process to process: the worst of three
    default = max((_faults("default") for _ in range(3)), key=lambda r: r["faults"])
    kept = _faults("keep")
    pages = 6 * 4 * 28_000_000 // 4096  # every buffer of every step, faulted in anew
    assert default["faults"] > pages // 20  # the control: by default some steps fault their buffers in
    assert kept["kept"] is True
    assert kept["faults"] < pages // 100  # the same steps now reuse the heap


@pytest.mark.parametrize(
    "env",
    [
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
        {"MALLOC_ARENA_MAX": "2"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    ],
)
def test_a_user_tuned_malloc_is_left_alone(monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert host_memory.user_tuned_malloc()
    assert host_memory._set_thresholds() is False


def test_an_untuned_environment_is_not_mistaken_for_a_tuned_one(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")
    for key in ("LD_PRELOAD", "MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(key, raising=False)
    assert not host_memory.user_tuned_malloc()
