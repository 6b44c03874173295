"""Can a drawn-digit validation set tell MNIST models apart? (typeset in the machine's fonts)

The drawn-digit test set (`tests/test_images_mnist.py`, 190 images) types its font digits in
Pillow's bundled font only, and nearly every MNIST model misreads its flagged 1s as 7s. Before
any setting is chosen on drawn digits, this asks whether a separate set, the ten digits typeset
in every TrueType font the machine has (Pillow's own font left out), large and centred dark on
light and small off-centre light on dark, reads differently from model to model: the demo's
CNN, the old demo's CNN, `fast` and the lesson's MLP, each trained by `cnnlab.fit` on the
training images less a 5,000-image validation split and read through `cnnlab.load` as the web
app reads a drawing. A set every candidate reads right cannot choose between them.

Run: `.venv/bin/python research/drawn_fonts.py --seeds 2 --out research/results/`
(`--quick`: 10,000 training images, 1 seed, 1 thread: a smoke test; `--fonts DIR`: where the
fonts are, default /usr/share/fonts; `--test-set`: also count the drawn-digit test set's 190
right, a measurement only, never a choice; with `--val-split 0 --only 2` it trains the two demo
CNNs on all 60,000 images, as the demo does).
"""

from __future__ import annotations

import collections
import sys
import tempfile
from pathlib import Path

import common
from PIL import Image, ImageDraw, ImageFont

import cnnlab

# (glyph height px, centre as fractions of a 240 px frame, light ink on dark)
PLACES = ((130, (0.5, 0.5), False), (70, (0.3, 0.7), True))
SKIP = ("Math", "ExtraLight")  # symbols; a hairline face no pen draws
# variant -> (recipe, overrides): the demo's two models, the old demo's CNN, the fastest recipe
VARIANTS = {
    "demo cnn (quick, float32)": ("quick", {"bf16": False}),
    "old demo cnn (cnn, 2 epochs)": (None, {"model": "cnn", "epochs": 2}),
    "fast": ("fast", {}),
    "lesson mlp": ("lesson-mlp", {}),
}


def font_digits(fonts: Path) -> list[tuple[Image.Image, int, str]]:
    """Each digit in each font and place: (image, digit, font name)."""
    items = []
    for path in sorted(fonts.rglob("*.ttf")):
        if any(s in path.name for s in SKIP):
            continue
        for height, (cx, cy), light in PLACES:
            font = ImageFont.truetype(str(path), height)
            for d in range(10):
                img = Image.new("L", (240, 240), 0 if light else 255)
                draw = ImageDraw.Draw(img)
                draw.text((cx * 240, cy * 240), str(d), fill=255 if light else 0, font=font, anchor="mm")
                items.append((img, d, path.stem))
    return items


def test_set_digits() -> list[tuple[Image.Image, int, str]]:
    """The 190 drawings of `tests/test_images_mnist.py` as (image, digit, group)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_images_mnist import drawn_set

    return [(img, d, group) for group, items in drawn_set().items() for img, d in items]


def misread(model: cnnlab.Predictor, items: list) -> collections.Counter:
    """'name: digit read as label' for each item `model` reads wrong."""
    predictions = model.predict([img for img, _, _ in items], top=1)
    return collections.Counter(
        f"{name}: {d} read as {r.top[0][0]}"
        for (_, d, name), r in zip(items, predictions, strict=True)
        if r.top[0][0] != str(d)
    )


def read_fonts(config: cnnlab.TrainConfig, items: list, test_items: list) -> dict:
    """Train `config` into a scratch run folder, then read the font digits (and the test set's)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = cnnlab.fit(config, out_dir=Path(tmp) / "run")
        model = cnnlab.load(Path(tmp) / "run")
        misses, test_misses = misread(model, items), misread(model, test_items)
    final = result.final
    tested = {
        "test_set_right": len(test_items) - test_misses.total(),
        "test_set_misses": dict(test_misses),
    }
    return {
        "seed": config.seed,
        "val_acc": final.get("val_acc"),
        "test_acc": final.get("test_acc"),
        "train_s": result.train_seconds,
        "stuck": None,
        "fonts_right": len(items) - sum(misses.values()),
        "fonts_total": len(items),
        "misses": dict(misses),
        **(tested if test_items else {}),
    }


def main() -> None:
    parser = common.parser(__doc__, seeds=2)
    parser.add_argument("--fonts", type=Path, default=Path("/usr/share/fonts"))
    parser.add_argument("--test-set", action="store_true", help="also read the 190 test drawings")
    parser.add_argument("--only", type=int, help="the first N variants only (default: all)")
    args = parser.parse_args()
    items = font_digits(args.fonts)
    if not items:
        raise SystemExit(f"no TrueType fonts under {args.fonts}; name a folder with --fonts")
    subset = {"train_subset": 10_000, "test_subset": 1000} if args.quick else {}
    threads = args.threads or (1 if args.quick else None)
    base = {"device": "cpu", "threads": threads, **subset, **common.held_out(args)}
    variants = {
        name: lambda seed, r=recipe, o=over: cnnlab.make_config(r, seed=seed, **{**base, **o})
        for name, (recipe, over) in list(VARIANTS.items())[: args.only]
    }
    test_items = test_set_digits() if args.test_set else []
    results = common.interleave(
        variants, 1 if args.quick else args.seeds, lambda _, c: read_fonts(c, items, test_items)
    )
    fonts = len({f for _, _, f in items})
    print(f"{len(items)} font digits: 10 digits x {len(PLACES)} places x {fonts} fonts")
    for name, res in results.items():
        print(f"{name:32s} fonts right: {[r['fonts_right'] for r in res['runs']]} of {len(items)}")
        if test_items:
            right = [r["test_set_right"] for r in res["runs"]]
            print(f"{'':32s} test set right: {right} of {len(test_items)}")
    common.report("drawn_fonts", __doc__.splitlines()[0], args, results)


if __name__ == "__main__":
    main()
