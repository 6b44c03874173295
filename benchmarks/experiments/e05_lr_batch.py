"""E05: OneCycle peak LR, batch size and label smoothing for the stride 16/32/64 net (1 epoch)."""

import sys

from harness import Config, compare, variant

base = Config(net="stride", net_kw=dict(c1=16, c2=32, c3=64))
variants = {
    "bs256 lr.005": variant(base, lr=0.005),
    "bs256 lr.01": base,
    "bs256 lr.02": variant(base, lr=0.02),
    "bs256 lr.04": variant(base, lr=0.04),
    "bs128 lr.01": variant(base, batch_size=128),
    "bs128 lr.02": variant(base, batch_size=128, lr=0.02),
    "bs256 lr.02 ls.1": variant(base, lr=0.02, label_smoothing=0.1),
    "bs512 lr.04": variant(base, batch_size=512, lr=0.04),
}
seeds = [int(s) for s in sys.argv[1:]] or [0, 1]
compare(variants, seeds, out="/tmp/e05.json")
