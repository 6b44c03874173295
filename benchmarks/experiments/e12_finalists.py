"""E12: finalists over 5 seeds: s8/24/64 (no BN on conv1), lr 0.03, label smoothing 0.1, batch 256."""

import sys

from harness import Config, compare, variant

base = Config(net="stride", net_kw=dict(c1=8, c2=24, c3=64, bn1=False), lr=0.03, label_smoothing=0.1)
variants = {
    "s8/24/64 betas .7/.9": base,
    "s8/24/64 betas .9/.999": variant(base, betas=(0.9, 0.999)),
    "s8/24/64 0.85 epoch": variant(base, epochs=0.85),
}
seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2, 3, 4]
compare(variants, seeds, out="/tmp/e12.json")
