"""E24: where the `fast` recipe's epoch goes now (whitening stem, 2 threads): phases, then ops.

Phase timers (wall clock, no profiler) split one real epoch into gather / forward+loss /
backward / optimiser+schedule; the profiler table (30 steps) then splits them by op and input
shape (it inflates small ops: read it for shares, not for absolute times).
Run: `PYTHONPATH=src python benchmarks/experiments/e24_profile_fast_whiten.py`.
"""

import time

import torch
from harness import epoch_phases, op_table

from cnnlab.models import get_model
from cnnlab.train import INIT_IMAGES, OPTIMIZERS, SCHEDULES, first_images, load_batches, make_config

config = make_config("fast", device="cpu")
torch.set_num_threads(2)
train, _, info = load_batches(config, torch.device("cpu"))
torch.manual_seed(0)
model = get_model(config.model, info.image_shape, info.num_classes, **config.model_kwargs)
model = model.to(memory_format=torch.channels_last)
opt = OPTIMIZERS["adam"](model.parameters(), config.lr, 0.0, config.adam_betas)
sched = SCHEDULES["onecycle"](opt, config.lr, len(train), config.cycle_momentum)
loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
for warm in (True, False):  # the first epoch warms oneDNN's kernels up; the second is timed
    t_epoch = time.perf_counter()
    model.init_from_data(first_images(train, INIT_IMAGES))
    init_s = time.perf_counter() - t_epoch
    # the warm-up epoch leaves the onecycle schedule alone, for the timed one
    phases = {"init": init_s, **epoch_phases(model, loss_fn, opt, None if warm else sched, train)}
wall = time.perf_counter() - t_epoch
print(f"one epoch of the fast recipe ({len(train)} steps, 2 threads): {wall:.2f} s wall")
for k, v in phases.items():
    print(f"  {k:10s} {v:6.3f} s  {100 * v / wall:5.1f} %")
print("load average:", open("/proc/loadavg").read().split()[:3])

print(op_table(model, loss_fn, opt, train, rows=16))
