"""Freed CPU memory stays in a training process (cnnlab.host_memory) unless the user tunes malloc."""

from __future__ import annotations

import json
import os
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


def _faults(mode: str, env: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", STEPS, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return json.loads(out.stdout)


# glibc's untouched default is a coin toss: its self-tuned threshold depends on what the imports
# freed: 8 of 20 processes here faulted every step, the other 12 never. The
# control pins its starting threshold instead, as in a process that has freed no large block yet.
UNTUNED = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    env = {k: "" for k in ("GLIBC_TUNABLES", "LD_PRELOAD") if k in os.environ}
    control = _faults("default", {**env, **UNTUNED})
    kept = _faults("keep", env)
    pages = 6 * 4 * 28_000_000 // 4096  # every buffer of every step, faulted in anew
    assert control["faults"] > pages // 2  # the control: every step faults its buffers in
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
