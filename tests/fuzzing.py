"""Shared fuzzing helpers: one hypothesis settings profile, byte mutators, a memory cap.

`make test` runs every `@pytest.mark.fuzz` test with FUZZ_EXAMPLES (200) examples,
derandomised so CI sees the same cases on every run; `make fuzz` sets CNNLAB_FUZZ_EXAMPLES
(5000) and then hypothesis draws fresh random cases each time.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from collections import Counter, defaultdict
from contextlib import contextmanager

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("CNNLAB_FUZZ_EXAMPLES", "200"))
LONG_RUN = "CNNLAB_FUZZ_EXAMPLES" in os.environ


def fuzz_settings(scale: float = 1.0) -> settings:
    """Settings for one fuzz test: `scale` x FUZZ_EXAMPLES examples (slow targets use < 1)."""
    return settings(
        max_examples=max(10, int(FUZZ_EXAMPLES * scale)),
        deadline=None,  # a shared 2-core CI box: timings vary, hangs are caught by pytest-timeout
        derandomize=not LONG_RUN,  # the same cases in every `make test`
        database=None if not LONG_RUN else settings.default.database,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
        ],
    )


# --- memory: an input may not make us allocate more than a bounded amount ---------------------


def _vm_size() -> int:
    """This process's virtual memory size in bytes (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


MEMORY_CAP_WORKS = sys.platform.startswith("linux")


@contextmanager
def memory_cap(extra_bytes: int):
    """Limit the address space to what is mapped now plus `extra_bytes` (RLIMIT_AS) for the block.

    Any allocation past the cap (numpy, torch, Rust or C) fails with MemoryError or a torch
    RuntimeError; the fuzz tests count those as bugs, like any other foreign exception. The
    previous limit is restored afterwards. A no-op off Linux.
    """
    if not MEMORY_CAP_WORKS:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# --- byte mutators ------------------------------------------------------------------------

INTERESTING_U32 = [
    0,
    1,
    2,
    3,
    4,
    0x7F,
    0x80,
    0xFF,
    0x100,
    2**16,
    2**24,
    2**24 + 1,
    2**31 - 1,
    2**31,
    2**32 - 1,
]


@st.composite
def mutated(draw, base: bytes, max_ops: int = 4, hot: int = 64) -> bytes:
    """`base` with 1..max_ops random edits; positions favour the first `hot` bytes (headers).

    Edits: flip a bit, set a byte, overwrite 4 or 8 bytes with an interesting big- or
    little-endian integer, insert or delete a few bytes, truncate, duplicate a slice.
    """
    data = bytearray(base)
    for _ in range(draw(st.integers(1, max_ops))):
        n = len(data)
        if n == 0:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        pos = draw(st.one_of(st.integers(0, min(hot, n) - 1), st.integers(0, n - 1)))
        op = draw(st.sampled_from(["flip", "set", "u32", "u64", "insert", "delete", "truncate", "dup"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op in ("u32", "u64"):
            width = 4 if op == "u32" else 8
            value = draw(
                st.one_of(
                    st.sampled_from(INTERESTING_U32 + [2**40, 2**63]),
                    st.integers(0, 2 ** (8 * width) - 1),
                )
            )
            value %= 2 ** (8 * width)
            order = draw(st.sampled_from(["big", "little"]))
            data[pos : pos + width] = value.to_bytes(width, order)
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        else:
            end = min(n, pos + draw(st.integers(1, 64)))
            data[pos:pos] = data[pos:end]
    return bytes(data)


# --- outcome counts, for the table in SECURITY.md ----------------------------------------------

OUTCOMES: dict[str, Counter] = defaultdict(Counter)


def record(target: str, outcome: str) -> None:
    """Count one case: `target` is the table row, `outcome` e.g. 'loaded' or an error type."""
    OUTCOMES[target][outcome] += 1


def write_report(path: str) -> None:
    """Write the counts as JSON (conftest calls this at session end when CNNLAB_FUZZ_REPORT is set)."""
    doc = {
        "examples_setting": FUZZ_EXAMPLES,
        "targets": {t: dict(sorted(c.items())) for t, c in sorted(OUTCOMES.items())},
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
