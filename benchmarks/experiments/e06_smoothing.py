"""E06: label smoothing on cheaper nets and partial epochs (lr 0.02, batch 256)."""

import sys

from harness import Config, compare, variant

base = Config(net="stride", net_kw=dict(c1=16, c2=32, c3=64), lr=0.02, label_smoothing=0.1)
variants = {
    "s16/32/64 ls.1": base,
    "s16/32/64 ls.2": variant(base, label_smoothing=0.2),
    "s16/32/64 ls.1 lr.04": variant(base, lr=0.04),
    "s16/32/64 ls.1 no bn1": variant(base, net_kw=dict(c1=16, c2=32, c3=64, bn1=False)),
    "s16/32/64 ls.1 0.75 ep": variant(base, epochs=0.75),
    "s16/32 ls.1": variant(base, net_kw=dict(c1=16, c2=32)),
    "s8/16/32 ls.1": variant(base, net_kw=dict(c1=8, c2=16, c3=32)),
    "s12/24/48 ls.1": variant(base, net_kw=dict(c1=12, c2=24, c3=48)),
}
seeds = [int(s) for s in sys.argv[1:]] or [0, 1]
compare(variants, seeds, out="/tmp/e06.json")
