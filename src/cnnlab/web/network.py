"""`POST /api/explain?layers=every`'s answer: every layer of the run on the image (the Network
page), from `cnnlab.explain_trace.layer_trace`.

All the arithmetic stays here: each layer says its kernel, stride, padding and dilation, the
lesson's formula with its numbers (`cnnlab.shapes`), its receptive field, and for every output
row and column the input rows/columns it sees, both in the layer's own input and in the model's
28x28 input; the page only draws rectangles from those numbers. Sizes are capped: at most
`MAX_MAPS` small PNGs and `MAX_VALUES` numbers per layer.
"""

from __future__ import annotations

import torch

from cnnlab.explain_trace import Field, LayerTrace, adaptive_window
from cnnlab.shapes import Output2d
from cnnlab.web.payload import feature_map_urls

MAX_MAPS = 32  # feature maps sent per layer (the page says "+N more")
MAX_VALUES = 1024  # numbers sent per 1-D layer
PATCH = 2  # a pooling layer's example: this many output rows and columns, with their windows
DIGITS = 4  # decimals kept in the numbers sent


def _round(values) -> list:
    """Nested lists of floats, rounded for a short answer."""
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if isinstance(values, list):
        return [_round(v) for v in values]
    return round(float(values), DIGITS)


def spans(n: int, out: int, kernel: int, stride: int, pad: int) -> list[list[int]]:
    """For each of `out` outputs, the first and last of `n` input positions its window covers."""
    result = []
    for i in range(out):
        start = i * stride - pad
        result.append([max(0, start), min(n - 1, start + kernel - 1)])
    return result


def _windows(t: LayerTrace) -> dict:
    """Kernel, stride, padding, dilation and each output row's/column's input window."""
    in_hw, out_hw = t.input_shape[-2:], tuple(t.output.shape[-2:])
    g: Output2d | None = t.geometry
    if g is not None:
        axes = (g.h, g.w)
        kernel, stride = [a.kernel for a in axes], [a.stride for a in axes]
        pad, dilation = [a.pad_before for a in axes], [a.dilation for a in axes]
        eff = [a.effective_kernel for a in axes]
    else:  # an adaptive pool: the widest window its sizes give
        kernel, stride = (list(v) for v in adaptive_window(in_hw, out_hw))
        pad, dilation, eff = [0, 0], [1, 1], kernel
    return {
        "kernel": kernel,
        "stride": stride,
        "padding": pad,
        "dilation": dilation,
        "formula": g.formula() if g is not None else None,
        "rows": spans(in_hw[0], out_hw[0], eff[0], stride[0], pad[0]),
        "cols": spans(in_hw[1], out_hw[1], eff[1], stride[1], pad[1]),
    }


def _field_json(field: Field, out_hw: tuple[int, int]) -> dict:
    """A receptive field, with the model-input window of every output row and column."""
    rows, cols = field.windows(out_hw)
    return {
        "size": list(field.size),
        "jump": list(field.jump),
        "offset": list(field.offset),
        "rows": [list(r) for r in rows],
        "cols": [list(c) for c in cols],
    }


def pool_patch(t: LayerTrace, windows: dict) -> dict | None:
    """A small patch of a pooling layer's input and the outputs its windows give, around the
    layer's strongest output (the channel and place of its largest value)."""
    if t.inputs is None or t.output.dim() != 3:
        return None
    out = t.output
    c = int(out.flatten(1).amax(1).argmax())
    i, j = divmod(int(out[c].argmax()), out.shape[-1])
    r0, c0 = max(0, min(i, out.shape[-2] - PATCH)), max(0, min(j, out.shape[-1] - PATCH))
    r_out = range(r0, min(out.shape[-2], r0 + PATCH))
    c_out = range(c0, min(out.shape[-1], c0 + PATCH))
    top, bottom = windows["rows"][r_out[0]][0], windows["rows"][r_out[-1]][1]
    left, right = windows["cols"][c_out[0]][0], windows["cols"][c_out[-1]][1]
    cells = [
        {
            "row": r,
            "col": q,
            "rows": [windows["rows"][r][0] - top, windows["rows"][r][1] - top],
            "cols": [windows["cols"][q][0] - left, windows["cols"][q][1] - left],
            "value": _round(out[c, r, q]),
        }
        for r in r_out
        for q in c_out
    ]
    return {
        "channel": c,
        "top": top,
        "left": left,
        "input": _round(t.inputs[c, top : bottom + 1, left : right + 1]),
        "cells": cells,
    }


def layer_json(t: LayerTrace) -> dict:
    """One layer of the trace as the API's JSON."""
    out = t.output
    item = {
        "name": t.name,
        "kind": t.kind,
        "module": t.module,
        "detail": t.detail,
        "input_shape": list(t.input_shape),
        "shape": list(out.shape),
        "params": t.params,
        "maps": None,
        "channels": None,
        "range": None,
        "values": None,
        "size": int(out.numel()),
        "field": None,
        "conv": None,
        "pool": None,
    }
    if out.dim() == 3:
        urls, (lo, hi) = feature_map_urls(out[:MAX_MAPS].float())
        item.update(maps=urls, channels=int(out.shape[0]), range=[lo, hi])
    else:
        item["values"] = _round(out.flatten()[:MAX_VALUES].float())
    if t.field is not None and out.dim() == 3:
        item["field"] = _field_json(t.field, tuple(out.shape[-2:]))
    if t.kind in ("conv", "pool") and len(t.input_shape) == 3 and out.dim() == 3:
        windows = _windows(t)
        if t.field is not None:  # what one output pixel sees of the model input, per axis
            windows.update(receptive_field=list(t.field.size), jump=list(t.field.jump))
        if t.kind == "conv":
            item["conv"] = windows
        else:
            op = "max" if "Max" in t.module else "average"
            item["pool"] = {**windows, "op": op, "patch": pool_patch(t, windows)}
    return item


def trace_json(traces: list[LayerTrace]) -> list[dict]:
    """Every layer of a `layer_trace` as the API's JSON, in call order."""
    return [layer_json(t) for t in traces]
