"""`cnnlab data fetch|info|show`: get, describe and look at a dataset."""

from __future__ import annotations

import argparse
import math
import sys

from cnnlab.cli.output import format_table, print_json, progress_enabled

DATASET_HELP = (
    "mnist, fashion-mnist, kmnist, emnist-digits, emnist-letters, qmnist, cifar10 "
    "or imagefolder:PATH (default: mnist)"
)


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="mnist", help=DATASET_HELP)
    p.add_argument("--root", default=None, help="data root (default: $CNNLAB_DATA or ~/.cache/cnnlab)")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="N",
        help="image folders: fit each image into an N x N square (default: 28)",
    )
    p.add_argument(
        "--channels", type=int, default=None, help="image folders: 1 (grey) or 3 (colour) (default: 1)"
    )


class DecodeBar:
    """A tqdm bar over an image folder's one decoding pass (terminal only, not with --quiet)."""

    def __init__(self, args, split: str):
        self.enabled, self.split, self.bar = progress_enabled(args), split, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            desc = f"decoding {self.split}"
            self.bar = tqdm(total=total, desc=desc, unit="img", leave=False, file=sys.stderr)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()


def load_split(args, split: str):
    """A split of `--dataset`, image folders decoded with `--image-size`/`--channels` and a bar."""
    from cnnlab.data.datasets import IMAGEFOLDER_PREFIX, load_dataset
    from cnnlab.errors import ConfigError

    given = {k: getattr(args, k) for k in ("image_size", "channels") if getattr(args, k) is not None}
    if not args.dataset.startswith(IMAGEFOLDER_PREFIX):
        if given:
            raise ConfigError(
                f"--image-size and --channels apply to image folders only, not {args.dataset}"
            )
        return load_dataset(args.dataset, split, args.root)
    return load_dataset(args.dataset, split, args.root, progress=DecodeBar(args, split), **given)


def register(sub, common) -> None:
    data = sub.add_parser("data", help="fetch, describe and show a dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = data_sub.add_parser("fetch", parents=[common], help="fetch and verify a dataset")
    add_dataset_options(p)
    p.set_defaults(func=cmd_fetch)

    p = data_sub.add_parser("info", parents=[common], help="sizes, shape, classes, batches")
    add_dataset_options(p)
    p.add_argument("--batch-size", type=int, default=64, help="for the batch count (default: 64)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = data_sub.add_parser("show", parents=[common], help="a PNG grid of the first images")
    add_dataset_options(p)
    p.add_argument("--split", default="train", choices=["train", "test"], help="(default: train)")
    p.add_argument("--n", type=int, default=6, help="how many images (default: 6)")
    p.add_argument("--out", default="samples.png", help="PNG file (default: samples.png)")
    p.set_defaults(func=cmd_show)


def cmd_fetch(args) -> int:
    from cnnlab.data.datasets import fetch_dataset

    result = fetch_dataset(args.dataset, args.root)
    print(f"{args.dataset}: verified files in {result.raw_dir} (served by the {result.source})")
    return 0


def describe(args, batch_size: int) -> dict:
    """The facts `data info` prints, as a dict."""
    from cnnlab.errors import ConfigError

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, not {batch_size}")
    splits = {}
    for split in ("train", "test"):
        ds = load_split(args, split)
        splits[split] = {
            "images": len(ds),
            "batches": math.ceil(len(ds) / batch_size),
            "first_label": int(ds.targets[0]),
            "class_counts": ds.class_counts(),
        }
    info = ds.info
    return {
        "dataset": info.name,
        "description": info.description,
        "image_shape": list(info.image_shape),
        "classes": list(info.classes),
        "mean": list(info.mean),
        "std": list(info.std),
        "batch_size": batch_size,
        "splits": splits,
    }


def cmd_info(args) -> int:
    facts = describe(args, args.batch_size)
    if args.json:
        print_json(facts)
        return 0
    c, h, w = facts["image_shape"]
    print(f"{facts['dataset']}: {facts['description']}")
    print(
        f"image shape: ({c}, {h}, {w})   classes ({len(facts['classes'])}): "
        + ", ".join(facts["classes"])
    )
    rows = []
    for split, s in facts["splits"].items():
        first = facts["classes"][s["first_label"]]
        rows.append([split, s["images"], s["batches"], first])
    print(format_table(["split", "images", f"batches of {args.batch_size}", "first label"], rows))
    print("images per class:")
    counts = [
        [name] + [facts["splits"][s]["class_counts"][i] for s in ("train", "test")]
        for i, name in enumerate(facts["classes"])
    ]
    print(format_table(["class", "train", "test"], counts))
    return 0


def cmd_show(args) -> int:
    from cnnlab.errors import ConfigError
    from cnnlab.figures import image_grid

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, not {args.n}")
    ds = load_split(args, args.split)
    n = min(args.n, len(ds))
    images = [ds[i][0] for i in range(n)]
    titles = [f"label: {ds.classes[int(ds.targets[i])]}" for i in range(n)]
    out = image_grid(images, titles, args.out, suptitle=f"{ds.info.name} {args.split}: first {n} images")
    print(f"wrote {out}")
    return 0
