"""E25: how idle OpenMP threads should wait, on an idle machine and beside two busy processes.

Each policy runs in a fresh process (OpenMP reads its environment once), at 2 threads: the
`fast` recipe and the lesson MLP (1 epoch), both on the first 15,000 training images, 3 seeds.
`--load` starts two pure-Python busy loops first (two other jobs on the 2-core machine).
Run: `PYTHONPATH=src python benchmarks/experiments/e25_omp_wait_policy.py [--load]`.

Measured 2026-12-01 on the 2-vCPU AMD EPYC (Zen 5), training seconds (fast, mlp) per seed,
first by hand with this procedure while `fast` still had its learned conv1:

    idle  PASSIVE                 (0.49, 0.73) (0.47, 0.74) (0.46, 0.76)
    idle  GOMP_SPINCOUNT=100000   (0.30, 0.26) (0.29, 0.26) (0.30, 0.25)
    idle  default (spin)          (0.30, 0.25) (0.29, 0.26) (0.29, 0.25)
    load  PASSIVE                 (1.32, 0.46) (1.43, 0.47) (1.26, 0.57)
    load  GOMP_SPINCOUNT=100000   (0.89, 0.89) (0.91, 0.95) (0.81, 0.95)
    load  default (spin)          (27.2, 63.4) (1.92, 2.07) (1.36, 1.62)
    load, second round:
    load  PASSIVE                 (1.25, 0.44) (1.30, 1.10) (1.43, 1.03)
    load  GOMP_SPINCOUNT=100000   (15.3, 0.78) (0.70, 0.87) (0.72, 0.83)
    load  default (spin)          (9.17, 1.03) (1.41, 1.09) (3.33, 1.05)

Then this script as committed, idle, with the whitening-stem `fast` recipe:

    idle  PASSIVE                 (0.38, 0.66) (0.34, 0.66) (0.37, 0.69)
    idle  GOMP_SPINCOUNT=100000   (0.23, 0.32) (0.21, 0.31) (0.18, 0.25)
    idle  default (spin)          (0.19, 0.22) (0.18, 0.23) (0.18, 0.23)

Idle, sleeping threads cost the fast recipe 1.6-2x and the MLP 2.9x; under load, spinning ones
stall now and then for 10-60x. Hence `cnnlab.cli.choose_omp_wait_policy`: PASSIVE only when
the 1-minute load average says the cores are already taken.
"""

import os
import subprocess
import sys

CHILD = """
import sys, torch
from cnnlab.train import fit, make_config
torch.set_num_threads(2)
times = []
for seed in range(3):
    a = fit(make_config("fast", seed=seed, device="cpu", train_subset=15000), None)
    b = fit(make_config("lesson-mlp", epochs=1, seed=seed, device="cpu", train_subset=15000), None)
    times.append((round(a.train_seconds, 2), round(b.train_seconds, 2)))
print(" ".join(str(t) for t in times))
"""

POLICIES = {
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=100000": {"GOMP_SPINCOUNT": "100000"},
    "default (spin)": {},
}


def main(load: bool) -> None:
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * load)]
    try:
        for name, extra in POLICIES.items():
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
            out = subprocess.run([sys.executable, "-c", CHILD], env={**env, **extra}, check=True,
                                 capture_output=True, text=True).stdout.strip()  # fmt: skip
            print(f"{'load' if load else 'idle'}  {name:22s}  {out}", flush=True)
    finally:
        for p in busy:
            p.kill()


if __name__ == "__main__":
    main("--load" in sys.argv[1:])
