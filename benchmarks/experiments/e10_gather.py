"""E10: the batch gather, per epoch of MNIST at batch 256: advanced indexing vs index_select.

`old` is InMemoryBatches' body before this change (images[idx], then (x - mean) / std).
"""

import statistics
import time

import torch
from harness import MEAN, STD, data

from cnnlab.data.batches import InMemoryBatches

torch.set_num_threads(1)
d = data()
X, Y = d["xtr"], d["ytr"]
mean = torch.tensor(MEAN).view(1, 1, 1, 1) * 255
std = torch.tensor(STD).view(1, 1, 1, 1) * 255


def old_epoch(order, bs=256):
    for i in range(len(order) // bs):
        idx = order[i * bs : (i + 1) * bs]
        x = (X[idx].float() - mean) / std
        x.contiguous(memory_format=torch.channels_last), Y[idx]


def new_epoch(batches):
    for _ in batches:
        pass


batches = InMemoryBatches(X, Y, 256, MEAN, STD, shuffle=True, drop_last=True, channels_last=True)
order = torch.randperm(len(Y))
ts = {"old (images[idx])": [], "new (index_select, in place)": []}
for _ in range(7):
    c = time.process_time()
    old_epoch(order)
    ts["old (images[idx])"].append(time.process_time() - c)
    c = time.process_time()
    new_epoch(batches)
    ts["new (index_select, in place)"].append(time.process_time() - c)
for k, v in ts.items():
    print(f"{k:30s} median {statistics.median(v) * 1e3:6.1f} ms/epoch  min {min(v) * 1e3:6.1f}")
