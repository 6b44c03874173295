"""`cnnlab explain RUN IMAGE`: what the network sees, as PNG files."""

from __future__ import annotations

from pathlib import Path

from cnnlab.cli.output import output_folder


def register(sub, common) -> None:
    p = sub.add_parser(
        "explain",
        parents=[common],
        help="feature maps, filters and saliency for one image",
        description="Write PNGs showing the preprocessing steps and prediction, which pixels "
        "drove the decision (saliency and occlusion), the first layer's learned filters, and "
        "the feature maps after each convolution and pooling layer.",
    )
    p.add_argument("run", metavar="RUN", help="run folder (from `cnnlab train --out`)")
    p.add_argument("image", metavar="IMAGE", help="an image file (.png .jpg .bmp .gif .webp)")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: explain_<image name>)")
    p.add_argument("--top", type=int, default=3, help="classes shown (default: 3)")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args) -> int:
    from cnnlab.explain import explain_image
    from cnnlab.predict import Predictor
    from cnnlab.reports.explain_figures import safe_name, write_explanation
    from cnnlab.runs import load_run

    predictor = Predictor(load_run(args.run))
    out = Path(args.out) if args.out else Path(f"explain_{safe_name(Path(args.image).stem)}")
    explanation = explain_image(predictor, args.image, top=args.top)
    output_folder(out, "--out" if args.out else "the explain folder")
    label, prob = explanation.prediction.top[0]
    print(
        f"{args.image}: {label} ({prob:.1%})   "
        + "   ".join(f"{c} ({p:.1%})" for c, p in explanation.prediction.top[1:])
    )
    if not explanation.layers:
        print(
            f"{predictor.model.__class__.__name__} has no convolution or pooling layers: "
            "no feature maps or filters to show"
        )
    for what, path in write_explanation(explanation, out):
        print(f"  {path}  {what}")
    return 0
