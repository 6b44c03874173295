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


def gemm_macs_per_second(size: int = 1024, repeats: int = 5) -> float:
    """Multiply-adds per second of a (size x size) @ (size x size) float32 product, median."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up: thread pool, kernel choice
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        rates.append(size**3 / (time.perf_counter() - t0))
    return statistics.median(rates)


def roofline(model_macs: int, images: int, train_seconds: float, epochs: int = 1) -> dict:
    """The epoch's achieved multiply-adds per second, the GEMM roof, and their ratio.

    Args:
        model_macs: forward multiply-adds of one image (`cnnlab.models.count_macs`).
        images: training images per epoch.
        train_seconds: the measured training seconds of those epochs.
        epochs: how many epochs `train_seconds` covers.
    """
    work = 3 * model_macs * images * epochs
    achieved = work / max(train_seconds, 1e-9)
    roof = gemm_macs_per_second()
    return {
        "what": "training multiply-adds per second (3 x forward MACs x images) against a 1024^3 "
        "float32 GEMM on the same threads",
        "model_macs_per_image": model_macs,
        "training_gmacs_per_s": achieved / 1e9,
        "gemm_gmacs_per_s": roof / 1e9,
        "fraction_of_gemm": achieved / roof,
        "threads": torch.get_num_threads(),
    }
