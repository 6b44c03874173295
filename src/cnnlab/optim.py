"""The optimiser and learning-rate schedule tables: a dict of choices, not an if/elif chain.

The names are `cnnlab.config.OPTIMIZER_NAMES` / `SCHEDULE_NAMES` (config stays torch-free);
a test checks the two agree.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params, lr, wd, betas: torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=betas),
    "adamw": lambda params, lr, wd, betas: torch.optim.AdamW(
        params, lr=lr, weight_decay=wd, betas=betas
    ),
    "sgd": lambda params, lr, wd, betas: torch.optim.SGD(
        params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd
    ),
}


def onecycle(optimizer, lr: float, steps: int, cycle_momentum: bool):
    """Warm up over the first quarter, then anneal (Smith 2018); None when too short to cycle."""
    if steps < 3:  # OneCycleLR needs a step up and a step down
        return None
    # OneCycleLR divides by pct_start * steps - 1: at least one warm-up step
    pct_start = max(0.25, 2 / steps)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=pct_start, cycle_momentum=cycle_momentum
    )


# schedule name -> builder(optimizer, peak lr, total steps, cycle momentum); stepped once per batch
SCHEDULES: dict[str, Callable[..., torch.optim.lr_scheduler.LRScheduler | None]] = {
    "constant": lambda opt, lr, steps, cycle: None,
    "onecycle": onecycle,
    "cosine": lambda opt, lr, steps, cycle: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps),
}
