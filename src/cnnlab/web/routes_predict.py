"""The model endpoints: classify an image, show its feature maps, nudge it until the answer
changes. Each takes `?run=NAME` (GET /api/runs lists them) and the same request bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from cnnlab.data.images import open_image
from cnnlab.errors import ConfigError
from cnnlab.web.deps import LimiterDep, RegistryDep, RunDep, SettingsDep, Transform, TransformDep
from cnnlab.web.errors import ERRORS
from cnnlab.web.payload import REQUEST_BODY, feature_map_urls, prediction_json, read_image_bytes
from cnnlab.web.run_registry import LoadedRun
from cnnlab.web.schemas import AdversarialResponse, ExplainResponse, PredictResponse, TraceResponse

router = APIRouter(prefix="/api", responses=ERRORS)
TOP_QUERY = Query(3, ge=1, le=1000, description="classes in `top`")


def predict_one(loaded: LoadedRun, data: bytes, name: str, max_pixels: int, move: Transform):
    """Decode, preprocess as the run's dataset was made, move/turn/zoom, classify (all classes)."""
    from cnnlab.predict import Prediction
    from cnnlab.robustness import affine_digit

    predictor = loaded.predictor
    img = open_image(data, name, max_pixels=max_pixels)
    (pred,) = predictor.predict([img], top=len(predictor.classes), names=[name])
    if move.identity:
        return pred
    x = affine_digit(pred.input, move.dx, move.dy, move.rotate, move.scale)
    (top,) = predictor.top_k(predictor.probabilities(x[None]), len(predictor.classes))
    return Prediction(pred.name, top, x, pred.preprocessed)


@router.post(
    "/predict",
    response_model=PredictResponse,
    openapi_extra={"requestBody": REQUEST_BODY},
    summary="Classify an image",
)
async def predict(
    request: Request,
    *,
    top: int = TOP_QUERY,
    loaded: RunDep,
    move: TransformDep,
    limiter: LimiterDep,
    settings: SettingsDep,
) -> dict:
    """Preprocess the image as the run's dataset was made (for MNIST: white ink on black,
    fitted into 20x20, centred by mass in 28x28), then move/rotate/scale that 28x28 input
    when asked (`dx`, `dy`, `rotate`, `scale`), and classify it."""
    data, name = await read_image_bytes(request)

    def work() -> dict:
        pred = predict_one(loaded, data, name, settings.max_pixels, move)
        return prediction_json(pred, loaded.predictor.classes, top)

    return await limiter.run(work)


def explain_first_or_pools(loaded: LoadedRun, pred, which: str, top: int) -> dict:
    """The prediction and the first conv layer's (or every conv and pool layer's) feature maps."""
    from cnnlab.explain import feature_maps
    from cnnlab.preprocess import to_model_input

    predictor = loaded.predictor
    chosen = loaded.convs[:1] if which == "first" else loaded.layers
    out = {"prediction": prediction_json(pred, predictor.classes, top), "layers": [], "note": None}
    if not chosen:
        out["note"] = f"{loaded.run.model_name} has no convolution layers: no feature maps to show"
        return out
    x = to_model_input(pred.input, predictor.mean, predictor.std)  # (1, C, H, W)
    maps = feature_maps(predictor.model, x, [ly.name for ly in chosen])
    for ly in chosen:
        m = maps[ly.name][0]  # (channels, h, w)
        urls, (lo, hi) = feature_map_urls(m)
        out["layers"].append(
            {
                "name": ly.name,
                "kind": ly.kind,
                "description": ly.description,
                "shape": list(m.shape),
                "range": [lo, hi],
                "maps": urls,
            }
        )
    return out


def explain_every(loaded: LoadedRun, pred, top: int) -> dict:
    """The prediction and every layer of the run on its input, in call order (the Network page)."""
    from cnnlab.explain_trace import layer_trace
    from cnnlab.preprocess import to_model_input
    from cnnlab.web.network import trace_json

    predictor = loaded.predictor
    x = to_model_input(pred.input, predictor.mean, predictor.std)  # (1, C, H, W)
    return {
        "run": loaded.name,
        "model": loaded.run.model_name,
        "classes": list(predictor.classes),
        "input_shape": list(pred.input.shape),
        "prediction": prediction_json(pred, predictor.classes, top),
        "layers": trace_json(layer_trace(predictor.model, x)),
    }


@router.post(
    "/explain",
    response_model=ExplainResponse | TraceResponse,
    openapi_extra={"requestBody": REQUEST_BODY},
    summary="Feature maps, or every layer, for an image",
)
async def explain(
    request: Request,
    *,
    layers: Literal["first", "all", "every"] = Query(
        "first",
        description="first conv layer, all conv and pooling layers, or every layer in call order "
        "(with shapes, parameters, receptive fields and the formula's numbers)",
    ),
    top: int = Query(3, ge=1, le=1000, description="classes in `prediction.top`"),
    loaded: RunDep,
    move: TransformDep,
    limiter: LimiterDep,
    settings: SettingsDep,
) -> dict:
    """The prediction plus what the layers computed: each channel of a layer's output as a
    small grey PNG (one brightness scale per layer). `layers=every` answers every layer, an
    MLP's too, with at most 32 maps or 1024 values each, ending with the softmax."""
    data, name = await read_image_bytes(request)

    def work() -> dict:
        pred = predict_one(loaded, data, name, settings.max_pixels, move)
        if layers == "every":
            return explain_every(loaded, pred, top)
        return explain_first_or_pools(loaded, pred, layers, top)

    return await limiter.run(work)


def nudge_dict(loaded: LoadedRun, others: list[LoadedRun], pred) -> dict:
    """The smallest L-infinity nudge of a prediction's input, and each run's reading of it."""
    import torch

    from cnnlab.robustness import normalise, smallest_linf_nudge
    from cnnlab.web.payload import input_data_url

    p = loaded.predictor
    x01 = pred.input.float()[None] / 255
    label = torch.tensor([p.classes.index(pred.label)])
    nudge = smallest_linf_nudge(p.model, x01, label, p.mean, p.std)
    image = nudge.images[0]
    readings = {}
    for other in [loaded, *others]:
        q = other.predictor
        with torch.inference_mode():
            logits = q.model(normalise(image[None].float(), q.mean, q.std))
        probs = torch.softmax(logits, 1)[0]
        readings[other.name] = {
            "label": q.classes[int(probs.argmax())],
            "probability": float(probs.max()),
            "probabilities": dict(zip(q.classes, probs.tolist(), strict=True)),
        }
    return {
        "run": loaded.name,
        "label": pred.label,
        "adversarial_label": p.classes[int(nudge.labels[0])],
        "found": bool(nudge.found[0]),
        "linf": float(nudge.linf[0]),
        "l2": float(nudge.l2[0]),
        "input": input_data_url(pred.input),
        "image": input_data_url((image * 255).round().clamp(0, 255).to(torch.uint8)),
        "readings": readings,
    }


@router.post(
    "/adversarial",
    response_model=AdversarialResponse,
    openapi_extra={"requestBody": REQUEST_BODY},
    summary="The smallest nudge that changes the answer",
)
async def adversarial(
    request: Request,
    *,
    compare: Annotated[list[str], Query(description="other runs that read the nudged image too")] = (),
    loaded: RunDep,
    move: TransformDep,
    registry: RegistryDep,
    limiter: LimiterDep,
    settings: SettingsDep,
) -> dict:
    """Preprocess as /api/predict does, then search (PGD, bisection over the size) the smallest
    L-infinity change of the [0, 1] model input that makes the run answer something else;
    sizes are in units of that image. `compare` runs read the nudged image too."""
    data, name = await read_image_bytes(request)
    if len(compare) > 4:
        raise ConfigError(f"compare takes at most 4 runs, not {len(compare)}")

    def work() -> dict:
        others = [registry.get(c) for c in compare if c != loaded.name]
        pred = predict_one(loaded, data, name, settings.max_pixels, move)
        return nudge_dict(loaded, others, pred)

    return await limiter.run(work)
