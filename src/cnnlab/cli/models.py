"""`cnnlab models`: the registered models with their size and cost for an input shape."""

from __future__ import annotations

from cnnlab.cli.output import format_table, print_json


def parse_shape(text: str) -> tuple[int, int, int]:
    """'1,28,28' or '1x28x28' -> (1, 28, 28)."""
    from cnnlab.errors import ConfigError

    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"--input-shape must be C,H,W such as 1,28,28, not {text!r}")
    return shape  # type: ignore[return-value]


def register(sub, common) -> None:
    p = sub.add_parser("models", parents=[common], help="list the models with size and cost")
    p.add_argument(
        "--input-shape", default="1,28,28", help="C,H,W of one input image (default: 1,28,28)"
    )
    p.add_argument("--classes", type=int, default=10, help="number of classes (default: 10)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)


def cmd_models(args) -> int:
    from cnnlab.models import count_macs, count_parameters, get_model, list_models, model_description

    shape = parse_shape(args.input_shape)
    rows = []
    for name in list_models():
        model = get_model(name, shape, args.classes)
        rows.append(
            {
                "model": name,
                "parameters": count_parameters(model),
                "macs": count_macs(model, shape),
                "description": model_description(name),
            }
        )
    if args.json:
        print_json({"input_shape": list(shape), "classes": args.classes, "models": rows})
        return 0
    print(f"models for input {shape} and {args.classes} classes (MACs: multiply-adds per image)")
    print(
        format_table(
            ["model", "parameters", "MACs", "description"],
            [[r["model"], f"{r['parameters']:,}", f"{r['macs']:,}", r["description"]] for r in rows],
            align="lrrl",
        )
    )
    return 0
