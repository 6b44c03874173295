"""E24: where the `fast` recipe's epoch goes now (whitening stem, 2 threads): phases, then ops.

Phase timers (wall clock, no profiler) split one real epoch into gather / forward+loss /
backward / optimiser+schedule; the profiler table (30 steps) then splits them by op and input
shape (it inflates small ops: read it for shares, not for absolute times).
Run: `PYTHONPATH=src python benchmarks/experiments/e24_profile_fast_whiten.py`.
"""

import time

import torch
from harness import op_table

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
    phases = dict(init=0.0, gather=0.0, forward=0.0, backward=0.0, optimizer=0.0)
    clock = time.perf_counter
    t_epoch = clock()
    model.init_from_data(first_images(train, INIT_IMAGES))
    phases["init"] = clock() - t_epoch
    it = iter(train)
    for _ in range(len(train)):
        t0 = clock()
        x, y = next(it)
        t1 = clock()
        loss = loss_fn(model(x), y)
        t2 = clock()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = clock()
        opt.step()
        sched.step() if not warm else None
        t4 = clock()
        for k, a, b in (("gather", t0, t1), ("forward", t1, t2), ("backward", t2, t3),
                        ("optimizer", t3, t4)):  # fmt: skip
            phases[k] += b - a
wall = time.perf_counter() - t_epoch
print(f"one epoch of the fast recipe ({len(train)} steps, 2 threads): {wall:.2f} s wall")
for k, v in phases.items():
    print(f"  {k:10s} {v:6.3f} s  {100 * v / wall:5.1f} %")
print("load average:", open("/proc/loadavg").read().split()[:3])

print(op_table(model, loss_fn, opt, train, rows=16))
