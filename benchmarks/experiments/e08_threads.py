"""E08: thread settings, each in its own process (OpenMP reads its env once), interleaved reps.

Measures wall seconds of a fixed 100-step training slice of the s8/16/32 net (batch 256).
"""

import os
import statistics
import subprocess
import sys

CHILD = r"""
import sys, time, torch, torch.nn.functional as F
sys.path.insert(0, HERE)
from harness import MEAN, NETS, STD, data
from cnnlab.data.batches import InMemoryBatches
torch.set_num_threads(int(sys.argv[1])); torch.set_num_interop_threads(1)
d = data(); torch.manual_seed(0)
m = NETS["stride"](c1=8, c2=16, c3=32).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(m.parameters(), lr=1e-3, fused=True)
it = iter(InMemoryBatches(d["xtr"], d["ytr"], 256, MEAN, STD, shuffle=True, channels_last=True))
def step():
    x, y = next(it); loss = F.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
for _ in range(5): step()
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(100): step()
print(time.perf_counter() - t0, time.process_time() - c0)
""".replace("HERE", repr(os.path.dirname(os.path.abspath(__file__))))

MODES = {
    "1 thread": ("1", {}),
    "2 threads": ("2", {}),
    "2 threads OMP_WAIT_POLICY=PASSIVE": ("2", {"OMP_WAIT_POLICY": "PASSIVE"}),
}
reps = int(sys.argv[1]) if len(sys.argv) > 1 else 4
res = {k: [] for k in MODES}
for _ in range(reps):
    for name, (threads, env) in MODES.items():
        out = subprocess.run(
            [sys.executable, "-c", CHILD, threads],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        res[name].append((float(out[0]), float(out[1])))
        print(
            f"  {name}: {float(out[0]):.2f} s wall, {float(out[1]):.2f} s cpu",
            file=sys.stderr,
            flush=True,
        )
print(f"{'mode':36s} {'median wall s':>13s} {'min wall s':>10s} {'median cpu s':>12s}  (100 steps)")
for name, r in res.items():
    print(
        f"{name:36s} {statistics.median(w for w, _ in r):13.2f} {min(w for w, _ in r):10.2f} "
        f"{statistics.median(c for _, c in r):12.2f}"
    )
with open("/proc/loadavg") as f:
    print("load average:", f.read().strip())
