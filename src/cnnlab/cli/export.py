"""`cnnlab export RUN --format onnx|torchscript`: a file other runtimes can run, checked."""

from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser(
        "export", parents=[common], help="export a run to ONNX or TorchScript, parity-checked",
        description="Export the run's model with a dynamic batch size, then run the exported "
        "file (onnxruntime or torch.jit) on the dataset's test images and compare with torch: "
        "the file is kept only if every logit agrees within 1e-4 and every top class matches.",
    )  # fmt: skip
    p.add_argument("run", metavar="RUN", help="run folder (from `cnnlab train --out`)")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx",
                   help="(default: onnx)")  # fmt: skip
    p.add_argument(
        "--out", default=None, help="file to write (default: RUN/model.onnx or RUN/model.torchscript.pt)"
    )
    p.add_argument("--exporter", choices=["dynamo", "legacy"], default="dynamo",
                   help="ONNX exporter: torch.export-based or the older TorchScript-based one "
                   "(default: dynamo)")  # fmt: skip
    p.add_argument("--check-images", type=int, default=256,
                   help="test images in the parity check (default: 256)")  # fmt: skip
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from cnnlab.errors import ConfigError
    from cnnlab.export import export_run
    from cnnlab.runs import load_run

    if args.check_images < 2:
        raise ConfigError(f"--check-images must be >= 2, not {args.check_images}")
    result = export_run(load_run(args.run), args.format, args.out, exporter=args.exporter,
                        check_images=args.check_images)  # fmt: skip
    how = "onnxruntime" if result.format == "onnx" else "torch.jit"
    print(f"wrote {result.path} ({result.format}, {result.exporter})")
    print(f"parity with torch ({how}, {result.image_source}, batch sizes "
          f"{' and '.join(map(str, result.batch_sizes))}): max |logit diff| "
          f"{result.max_abs_diff:.2e}, same top class {result.argmax_agreement:.2%}")  # fmt: skip
    return 0
