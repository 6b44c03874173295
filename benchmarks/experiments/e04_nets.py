"""E04: accuracy after one epoch for cheap candidate nets (Adam (0.7, 0.9), OneCycle, batch 256)."""

import sys

from harness import Config, compare

variants = {
    "stride 16/32": Config(net="stride", net_kw=dict(c1=16, c2=32)),
    "stride 24/48": Config(net="stride", net_kw=dict(c1=24, c2=48)),
    "stride 16/32/64": Config(net="stride", net_kw=dict(c1=16, c2=32, c3=64)),
    "stride 32/64 h128": Config(net="stride", net_kw=dict(c1=32, c2=64, hidden=128)),
    "pool 8/16 k5 h64": Config(net="pool", net_kw=dict(c1=8, c2=16, k=5, hidden=64)),
}
seeds = [int(s) for s in sys.argv[1:]] or [0, 1]
compare(variants, seeds, out="/tmp/e04.json")
