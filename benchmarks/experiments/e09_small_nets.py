"""E09: the cheapest nets near 99 % with label smoothing 0.1 (lr 0.02, batch 256, no BN on conv1)."""

import sys

from harness import Config, compare, variant

S = "stride"
base = Config(net=S, net_kw=dict(c1=8, c2=16, c3=32, bn1=False), lr=0.02, label_smoothing=0.1)
variants = {
    "s8/16/32": base,
    "s8/16/32 lr.04": variant(base, lr=0.04),
    "s8/16/64": variant(base, net_kw=dict(c1=8, c2=16, c3=64, bn1=False)),
    "s8/24/48": variant(base, net_kw=dict(c1=8, c2=24, c3=48, bn1=False)),
    "s10/20/40": variant(base, net_kw=dict(c1=10, c2=20, c3=40, bn1=False)),
    "s8/16/32 h64": variant(base, net_kw=dict(c1=8, c2=16, c3=32, bn1=False, hidden=64)),
    "s12/24/48 0.8ep": variant(base, net_kw=dict(c1=12, c2=24, c3=48, bn1=False), epochs=0.8),
    "s16/32/64 0.6ep": variant(base, net_kw=dict(c1=16, c2=32, c3=64, bn1=False), epochs=0.6),
}
seeds = [int(s) for s in sys.argv[1:]] or [0, 1]
compare(variants, seeds, out="/tmp/e09.json")
