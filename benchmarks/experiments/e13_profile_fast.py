"""E13: where the `fast` recipe's epoch goes: phase timers over a full epoch, then per-op profile.

Phase timers (no profiler) split one real epoch (the recipe's model, optimiser, schedule, batch
256, 1 thread) into gather / forward+loss / backward / optimizer+schedule. The profiler table
(30 steps) then splits forward and backward by op; it inflates small ops, so read it for
shares within a phase.
"""

import time

import torch
from harness import epoch_phases, op_table

from cnnlab.models import get_model
from cnnlab.train import OPTIMIZERS, SCHEDULES, load_batches, make_config

config = make_config("fast")
torch.set_num_threads(1)  # the docstring's 1 thread (the recipe itself now uses all cores)
train, _, info = load_batches(config, torch.device("cpu"))
torch.manual_seed(0)
model = get_model("fast", info.image_shape, info.num_classes).to(memory_format=torch.channels_last)
opt = OPTIMIZERS["adam"](model.parameters(), config.lr, 0.0, config.adam_betas)
sched = SCHEDULES["onecycle"](opt, config.lr, len(train), config.cycle_momentum)
loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
clock = time.process_time
t_epoch = time.perf_counter()
c_epoch = clock()
phases = epoch_phases(model, loss_fn, opt, sched, train, clock)
wall, cpu = time.perf_counter() - t_epoch, clock() - c_epoch
print(f"one epoch of the fast recipe ({len(train)} steps): {wall:.2f} s wall, {cpu:.2f} s CPU")
for k, v in phases.items():
    print(f"  {k:10s} {v:6.2f} s CPU  {100 * v / cpu:5.1f} %")
print("load average:", open("/proc/loadavg").read().split()[:3])

print(op_table(model, loss_fn, opt, train, rows=18))
