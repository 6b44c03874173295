"""The JSON shapes of the REST API (they make the OpenAPI document at /docs)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ClassProbability(BaseModel):
    """One class and how likely the model finds it."""

    class_: str = Field(alias="class", description="class name, e.g. '7'")
    probability: float


class PredictResponse(BaseModel):
    """What `POST /api/predict` answers."""

    label: str = Field(description="the most likely class")
    probability: float = Field(description="its probability")
    top: list[ClassProbability] = Field(description="the `top` most likely classes, best first")
    probabilities: dict[str, float] = Field(description="every class's probability, in class order")
    input: str = Field(description="the model's input (28x28 for MNIST) as a PNG data URL")
    inverted: bool = Field(description="the image was dark ink on light paper and got inverted")
    thickened: int = Field(description="dilation radius given to thin strokes (0: none)")


class FeatureMapLayer(BaseModel):
    """The feature maps of one convolution or pooling layer for the image."""

    name: str = Field(description="the layer's module name, e.g. 'features.conv1'")
    kind: str = Field(description="'conv' or 'pool'")
    description: str = Field(description="e.g. 'Conv2d 1->16 3x3 + BatchNorm2d + ReLU'")
    shape: list[int] = Field(description="(channels, height, width) of its output")
    range: list[float] = Field(description="[min, max] activation, mapped to black..white")
    maps: list[str] = Field(description="one grey PNG data URL per channel")


class ExplainResponse(BaseModel):
    """What `POST /api/explain` answers."""

    prediction: PredictResponse
    layers: list[FeatureMapLayer]
    note: str | None = Field(None, description="why no layers are listed (a model without conv)")


class Windows(BaseModel):
    """A conv or pooling layer's settings, per axis (h, w), and the input rows and columns each
    output row and column reads (first and last, in the layer's own input)."""

    kernel: list[int]
    stride: list[int]
    padding: list[int] = Field(description="zero rows/columns added before the input (top, left)")
    dilation: list[int]
    formula: str | None = Field(description="the lesson's formula with this layer's numbers")
    rows: list[list[int]]
    cols: list[list[int]]
    receptive_field: list[int] | None = Field(None, description="model-input pixels one output sees")
    jump: list[int] | None = Field(None, description="model-input pixels between neighbouring outputs")
    op: str | None = Field(None, description="pooling: 'max' or 'average'")
    patch: dict | None = Field(
        None, description="pooling: a patch of its input, its windows and their outputs"
    )


class ReceptiveField(BaseModel):
    """Which pixels of the model's input one output pixel of a layer sees, per axis (h, w)."""

    size: list[int] = Field(description="input pixels seen along each axis")
    jump: list[int] = Field(description="input pixels between neighbouring output pixels")
    offset: list[int] = Field(description="where output pixel 0's window starts (< 0: padding)")
    rows: list[list[int]] = Field(description="per output row, first and last input row seen")
    cols: list[list[int]] = Field(description="per output column, first and last input column")


class TraceLayer(BaseModel):
    """One layer of the run on the image (`layers=every`)."""

    name: str = Field(description="module name, e.g. 'features.conv1.0'; 'softmax' last")
    kind: str = Field(description="conv, pool, activation, batchnorm, flatten, linear, dropout, softmax")
    module: str = Field(description="the module's class, e.g. 'Conv2d'")
    detail: str = Field(description="e.g. 'Conv2d 1->16 3x3, stride 1, padding 1'")
    input_shape: list[int]
    shape: list[int] = Field(description="its output's shape, without the batch")
    params: int = Field(description="parameters the layer holds itself")
    maps: list[str] | None = Field(description="(C, H, W) outputs: the first 32 maps as PNG data URLs")
    channels: int | None = Field(description="all the channels (maps may show fewer)")
    range: list[float] | None = Field(description="[min, max] of the maps shown: black..white")
    values: list[float] | None = Field(description="1-D outputs: the first 1024 values")
    size: int = Field(description="numbers in its output")
    field: ReceptiveField | None
    conv: Windows | None
    pool: Windows | None


class TraceResponse(BaseModel):
    """What `POST /api/explain?layers=every` answers."""

    run: str
    model: str
    classes: list[str]
    input_shape: list[int] = Field(description="(C, H, W) of the model input")
    prediction: PredictResponse
    layers: list[TraceLayer]


class ModelCard(BaseModel):
    """What `GET /api/model` answers."""

    run: str = Field(description="the run folder's name")
    model: str
    model_kwargs: dict
    dataset: str
    classes: list[str]
    input_shape: list[int]
    parameters: int = Field(description="trainable parameters")
    test_accuracy: float | None = Field(description="last epoch's test accuracy, when recorded")
    epochs: int | None = Field(description="epochs trained, when recorded")
    conv_layers: list[str] = Field(description="convolution layers, in forward order")


class Health(BaseModel):
    status: str
    model: str


class ErrorBody(BaseModel):
    """Every error: a 4xx status and one line saying what was wrong and how to fix it."""

    error: str


class RunEntry(BaseModel):
    """One run folder a server offers, as its files describe it."""

    name: str = Field(description="its name for ?run=, e.g. 'demo/cnn'")
    model: str | None
    dataset: str | None
    test_accuracy: float | None
    epochs: int | None
    parameters: int | None = Field(description="numbers in its weights (BatchNorm statistics excluded)")
    recipe: str | None = None
    error: str | None = Field(description="why its files cannot be read, else null")


class RunList(BaseModel):
    """What `GET /api/runs` answers."""

    runs: list[RunEntry]
    default: str = Field(description="the run used when a request names none")


class ShiftTest(BaseModel):
    """What `GET /api/shift-test` answers."""

    run: str
    n: int = Field(description="test images measured")
    shifts: list[int] = Field(description="pixels moved right and down")
    accuracy: list[float] = Field(description="accuracy at each shift")


class Reading(BaseModel):
    """One run's answer for an image."""

    label: str
    probability: float
    probabilities: dict[str, float]


class AdversarialResponse(BaseModel):
    """What `POST /api/adversarial` answers."""

    run: str
    label: str = Field(description="the run's answer for the image")
    adversarial_label: str = Field(description="its answer for the nudged image")
    found: bool = Field(description="whether any change of size <= 1 changed the answer")
    linf: float = Field(description="largest pixel change, in units of the [0, 1] image")
    l2: float = Field(description="Euclidean length of the change, same units")
    input: str = Field(description="the model input before the nudge (PNG data URL)")
    image: str = Field(description="the nudged input (PNG data URL, 8-bit)")
    readings: dict[str, Reading] = Field(description="each run's reading of the nudged image")
