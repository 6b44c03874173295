"""`cnnlab export RUN --format onnx|torchscript|pt2`: a file other runtimes can run, checked."""

from __future__ import annotations

# cnnlab.export.FORMATS, named here so that `cnnlab --help` does not import torch
FORMATS = ("onnx", "torchscript", "pt2")


def register(sub, common) -> None:
    p = sub.add_parser(
        "export",
        parents=[common],
        help="export a run to ONNX, TorchScript or torch.export (.pt2), parity-checked",
        description="Export the run's model with a dynamic batch size, then run the exported "
        "file (onnxruntime, torch.jit or torch.export) on the dataset's test images and compare "
        "with torch: the file is kept only if every logit agrees within 1e-4 and every top class "
        "matches. ONNX and .pt2 files carry the classes, mean/std, input shape and "
        "preprocessing style.",
    )
    p.add_argument("run", metavar="RUN", help="run folder (from `cnnlab train --out`)")
    p.add_argument("--format", choices=list(FORMATS), default="onnx", help="(default: onnx)")
    p.add_argument(
        "--out",
        default=None,
        help="file to write (default: RUN/model.onnx, RUN/model.torchscript.pt or RUN/model.pt2)",
    )
    p.add_argument(
        "--exporter",
        choices=["dynamo", "legacy"],
        default="dynamo",
        help="ONNX exporter: torch.export-based or the older TorchScript-based one (default: dynamo)",
    )
    p.add_argument(
        "--check-images",
        type=int,
        default=256,
        help="test images in the parity check (default: 256)",
    )
    p.set_defaults(func=cmd_export)


RUNTIMES = {"onnx": "onnxruntime", "torchscript": "torch.jit", "pt2": "torch.export"}


def cmd_export(args) -> int:
    from cnnlab.errors import ConfigError
    from cnnlab.export import export_run
    from cnnlab.runs import load_run

    if args.check_images < 2:
        raise ConfigError(f"--check-images must be >= 2, not {args.check_images}")
    result = export_run(
        load_run(args.run),
        args.format,
        args.out,
        exporter=args.exporter,
        check_images=args.check_images,
    )
    sizes = " and ".join(map(str, result.batch_sizes))
    print(f"wrote {result.path} ({result.format}, {result.exporter})")
    print(
        f"parity with torch ({RUNTIMES[result.format]}, {result.image_source}, batch sizes {sizes}): "
        f"max |logit diff| {result.max_abs_diff:.2e}, same top class {result.argmax_agreement:.2%}"
    )
    return 0
