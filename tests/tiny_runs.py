"""Real run folders made in a test: a registered model trained briefly with the fast batches,
saved with `runs.save_weights` (what `cnnlab train` writes), so predict/explain/export read
exactly what users have."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from cnnlab import runs
from cnnlab.data.batches import Augment, InMemoryBatches
from cnnlab.data.datasets import load_dataset
from cnnlab.models import get_model


def make_run(
    out: Path,
    dataset: str = "fake",
    model_name: str = "cnn",
    model_kwargs: dict | None = None,
    epochs: int = 1,
    limit: int | None = None,
    lr: float = 3e-3,
    augment: Augment | None = None,
    style: str | None = None,
    seed: int = 0,
    root=None,
    saved_as: str | None = None,
) -> Path:
    """Train `model_name` on the first `limit` training images of `dataset`; write `out`.

    `style` and `saved_as` (the dataset name written in the run) override the dataset's own.

    One thread: on a 2-core machine shared with other jobs, two spinning OpenMP threads ran a
    cnn step 14x slower (0.39 s against 0.027 s, measured in one process).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_and_save(
            out,
            dataset,
            model_name,
            model_kwargs,
            epochs,
            limit,
            lr,
            augment,
            style,
            seed,
            root,
            saved_as,
        )
    finally:
        torch.set_num_threads(threads)


def _train_and_save(
    out, dataset, model_name, model_kwargs, epochs, limit, lr, augment, style, seed, root, saved_as
) -> Path:
    torch.manual_seed(seed)
    train = load_dataset(dataset, "train", root)
    info = dataclasses.replace(
        train.info, style=style or train.info.style, name=saved_as or train.info.name
    )
    kwargs = dict(model_kwargs or {})
    model = get_model(model_name, info.image_shape, info.num_classes, **kwargs)
    images, targets = train.images[:limit], train.targets[:limit]
    batches = InMemoryBatches(
        images, targets, 64, info.mean, info.std, shuffle=True, seed=seed, augment=augment
    )
    steps = epochs * len(batches)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        for x, y in batches:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    runs.save_weights(out / runs.WEIGHTS, model, runs.run_metadata(model_name, kwargs, info))
    return out


def accuracy(run_dir: Path, dataset: str, root=None) -> float:
    """Test accuracy of a run on its dataset's raw test tensors."""
    run = runs.load_run(run_dir)
    test = load_dataset(dataset, "test", root)
    x = (test.images.float() / 255 - run.mean[0]) / run.std[0]
    with torch.no_grad():
        pred = torch.cat([run.model(b).argmax(1) for b in x.split(1000)])
    return (pred == test.targets).float().mean().item()
