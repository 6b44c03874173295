"""E01: the published GPU recipe on this CPU: channels_last, bf16 autocast, threads."""

import sys

from harness import Config, compare, variant

base = Config(net="ref")
variants = {
    "ref nchw": variant(base, channels_last=False),
    "ref channels_last": base,
    "ref cl + bf16": variant(base, bf16=True),
    "ref cl 1 thread": variant(base, threads=1),
}
seeds = [int(s) for s in sys.argv[1:]] or [0, 1]
compare(variants, seeds, out="/tmp/e01.json")
