"""The baselines a recipe is timed against in the same run: the lesson's own loop, and the
published GPU speed recipe (`reference`) trained through the same `fit` as ours.
"""

from __future__ import annotations

import time

import torch

from cnnlab.errors import ConfigError

TORCHVISION_CLASSES = {"MNIST": "MNIST", "FashionMNIST": "FashionMNIST"}


def torchvision_split(dataset: str, train: bool, root: str | None, subset: int | None):
    """torchvision's own dataset class over cnnlab's verified files, with ToTensor."""
    from torch.utils.data import Subset
    from torchvision import datasets as tv_datasets
    from torchvision import transforms

    from cnnlab.data.datasets import default_root, fetch_dataset, get_dataset_info

    info = get_dataset_info(dataset)
    if info.folder not in TORCHVISION_CLASSES:
        raise ConfigError(f"the lesson baseline needs mnist or fashion-mnist, not {dataset!r}")
    fetch_dataset(dataset, root)  # verified raw files under root/<folder>/raw
    cls = getattr(tv_datasets, TORCHVISION_CLASSES[info.folder])
    ds = cls(str(root or default_root()), train=train, transform=transforms.ToTensor(), download=False)
    return Subset(ds, range(min(subset, len(ds)))) if subset else ds


def _lesson_train(model, loader, epochs: int, device: str) -> tuple[int, float]:
    """The lesson's loop, Adam lr 0.01: (steps, seconds from the first batch to the last step)."""
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    steps = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            output = model(images)
            loss = loss_fn(output, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps, time.perf_counter() - t0


def lesson_baseline(
    dataset: str = "mnist",
    root: str | None = None,
    epochs: int = 1,
    seed: int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    device: str = "cpu",
) -> dict:
    """The lesson's training loop as written, timed: the baseline the fast path is measured against.

    torchvision's dataset + ToTensor + DataLoader(batch_size=64, shuffle=True), the lesson's
    CNN (`lesson-cnn`), CrossEntropyLoss, Adam lr 0.01, `epochs` epochs. The time runs from the
    first batch to the last step; the test accuracy uses batches of 1000 (the lesson's
    per-image test loop gives the same number, slower). Threads are whatever the caller set.
    On a GPU the usual way: the model on the device and each batch moved there with `.to()`.
    """
    from torch.utils.data import DataLoader

    from cnnlab.data.datasets import get_dataset_info
    from cnnlab.models import get_model

    info = get_dataset_info(dataset)
    train_set = torchvision_split(dataset, True, root, train_subset)
    test_set = torchvision_split(dataset, False, root, test_subset)
    torch.manual_seed(seed)
    loader = DataLoader(train_set, batch_size=64, shuffle=True)
    model = get_model("lesson-cnn", info.image_shape, info.num_classes).to(device)
    steps, train_s = _lesson_train(model, loader, epochs, device)
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in DataLoader(test_set, batch_size=1000):
            correct += int((model(images.to(device)).argmax(1).cpu() == labels).sum())
    return {
        "what": "the lesson's loop: torchvision dataset + ToTensor + DataLoader(batch 64, "
        "shuffle), lesson-cnn, Adam lr 0.01",
        "device": device,
        "epochs": epochs,
        "steps": steps,
        "train_s": train_s,
        "test_acc": correct / len(test_set),
        "train_images": len(train_set),
        "threads": torch.get_num_threads(),
    }
