"""E11: tuning the s8/x/y family (label smoothing 0.1, no BN on conv1): LR, widths, head."""

import sys

from harness import Config, compare, variant

S = "stride"


def net(c2, c3, **kw):
    return dict(c1=8, c2=c2, c3=c3, bn1=False, **kw)


base = Config(net=S, net_kw=net(24, 48), lr=0.04, label_smoothing=0.1)
variants = {
    "s8/24/48 lr.04": base,
    "s8/16/64 lr.04": variant(base, net_kw=net(16, 64)),
    "s8/24/64 lr.03": variant(base, net_kw=net(24, 64), lr=0.03),
    "s8/16/64 h64 lr.04": variant(base, net_kw=net(16, 64, hidden=64)),
    "s8/24/48 lr.04 pct.15": variant(base, pct_start=0.15),
    "s8/24/48 lr.04 b.8/.95": variant(base, betas=(0.8, 0.95)),
}
seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
compare(variants, seeds, out="/tmp/e11.json")
