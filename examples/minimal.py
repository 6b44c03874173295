"""The whole lesson on cnnlab's public API: train the lesson's MLP and a CNN, compare, predict.

    .venv/bin/python examples/minimal.py            # ~1 minute on 2 CPU cores
    .venv/bin/python examples/minimal.py --quick    # seconds: 10,000 training images

Everything here is `import cnnlab`: make_config (a recipe plus overrides), fit (train into a
run folder), load (a run folder -> a predictor). The run folders land in runs/minimal/.
"""

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

import cnnlab


def draw_seven(path: Path) -> Path:
    """A digit drawn the way a person would: dark ink on white paper."""
    img = Image.new("L", (200, 200), "white")
    ImageDraw.Draw(img).line([(40, 40), (160, 40), (90, 170)], fill="black", width=14)
    img.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train on 10,000 images only")
    parser.add_argument("--out", default="runs/minimal", help="folder for the run folders")
    args = parser.parse_args()
    subset = {"train_subset": 10000, "test_subset": 2000} if args.quick else {}
    out = Path(args.out)

    results = {}
    for name, recipe in (("mlp", "lesson-mlp"), ("cnn", "fast")):
        config = cnnlab.make_config(recipe, **subset)  # the recipe's settings, then overrides
        result = cnnlab.fit(config, out / name)  # writes weights, metrics, curves, resume state
        results[name] = result.final["test_acc"]
        print(
            f"{name}: {100 * result.final['test_acc']:.2f} % test accuracy, "
            f"{result.train_seconds:.1f} s of training"
        )
    print("the CNN beats the MLP" if results["cnn"] > results["mlp"] else "the MLP won this time")

    digit = draw_seven(out / "seven.png")
    for name in results:
        (prediction,) = cnnlab.load(out / name).predict([digit])
        print(f"{name} reads {digit}: {prediction.label} ({100 * prediction.probability:.1f} %)")


if __name__ == "__main__":
    main()
