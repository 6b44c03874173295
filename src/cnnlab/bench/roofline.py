"""How close an epoch runs to the machine's limit: its multiply-adds per second against a GEMM's.

A large float32 matrix multiply is about the fastest arithmetic these cores do, so its rate
(measured here, at the threads in use) is the roof. An epoch's work is counted as three times
the forward multiply-adds of every training image (forward, input gradient, weight gradient:
the usual estimate; a frozen first layer does less, so the fraction is then a slight
overestimate of the work done).
"""

from __future__ import annotations

import statistics
import time

import torch


def gemm_macs_per_second(size: int = 1024, repeats: int = 5, dtype=torch.float32) -> float:
    """Multiply-adds per second of a (size x size) @ (size x size) product in `dtype`, median."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)  # warm-up: thread pool, kernel choice
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        rates.append(size**3 / (time.perf_counter() - t0))
    return statistics.median(rates)


def roofline(
    model_macs: int, images: int, train_seconds: float, epochs: int = 1, bf16: bool = False
) -> dict:
    """The epoch's achieved multiply-adds per second, the GEMM roof, and their ratio.

    Args:
        model_macs: forward multiply-adds of one image (`cnnlab.models.count_macs`).
        images: training images per epoch.
        train_seconds: the measured training seconds of those epochs.
        epochs: how many epochs `train_seconds` covers.
        bf16: training ran in bfloat16: the roof is a bfloat16 GEMM (AMX makes it several times
            the float32 one), and the float32 rate is kept beside it.
    """
    work = 3 * model_macs * images * epochs
    achieved = work / max(train_seconds, 1e-9)
    fp32 = gemm_macs_per_second()
    roof = gemm_macs_per_second(dtype=torch.bfloat16) if bf16 else fp32
    dtype = "bfloat16" if bf16 else "float32"
    return {
        "what": "training multiply-adds per second (3 x forward MACs x images) against a 1024^3 "
        "GEMM in the dtype training ran in, on the same threads",
        "model_macs_per_image": model_macs,
        "training_gmacs_per_s": achieved / 1e9,
        "gemm_dtype": dtype,
        "gemm_gmacs_per_s": roof / 1e9,
        "gemm_fp32_gmacs_per_s": fp32 / 1e9,
        "fraction_of_gemm": achieved / roof,
        "threads": torch.get_num_threads(),
    }
