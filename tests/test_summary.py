"""cnnlab.summary: per-layer shapes that agree with a real forward pass, and the Linear mismatch;
cnnlab.layer_shapes: the same rows by arithmetic, checked against summarize as the oracle."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.layer_shapes import layer_shapes
from cnnlab.summary import flatten_features, format_shape, summarize


class LessonCNN(nn.Module):
    """The lesson's CNN: conv5 -> pool2 -> conv5 (16 channels) -> pool2 -> 3 Linear layers."""

    def __init__(self, linear_in: int = 16, flatten: str = "flatten"):
        super().__init__()
        self.flatten = flatten
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.maxpool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.maxpool2 = nn.MaxPool2d(2, 2)
        self.linear1 = nn.Linear(linear_in, 128)
        self.linear2 = nn.Linear(128, 64)
        self.linear3 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.maxpool1(F.relu(self.conv1(x)))  # (B, 6, 12, 12)
        x = self.maxpool2(F.relu(self.conv2(x)))  # (B, 16, 4, 4)
        x = x.flatten(1) if self.flatten == "flatten" else x.reshape(-1, 4 * 4)  # the lesson's line
        x = F.relu(self.linear1(x))
        x = F.relu(self.linear2(x))
        return self.linear3(x)


def test_lesson_cnn_with_linear_16_names_the_layer_and_256():
    model = LessonCNN(linear_in=16)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        model(torch.zeros(2, 1, 28, 28))  # what the learner would otherwise see
    summary = summarize(model, (1, 28, 28))
    assert not summary.ok
    [m] = summary.mismatches
    assert (m.name, m.has, m.needs) == ("linear1", 16, 256)
    assert m.after == "maxpool2" and m.after_shape == (2, 16, 4, 4)
    # the pass went on with a zero input of the right size, so the later layers are checked too
    assert [r.name for r in summary.layers][-2:] == ["linear2", "linear3"]
    assert summary.output_shape == (2, 10)
    with pytest.raises(ShapeError) as e:
        summary.check()
    msg = str(e.value)
    assert "linear1 (Linear) has in_features=16 but each image brings 256 features" in msg
    assert "nn.Linear(256, ...)" in msg and "mat1" not in msg and "\n" not in msg


def test_lesson_reshape_that_folds_the_batch_is_caught():
    # x.reshape(-1, 4 * 4) with 16 channels does not crash: it makes 16 rows per image, and the
    # error only shows up later as a batch-size mismatch in the loss
    model = LessonCNN(linear_in=16, flatten="reshape")
    assert model(torch.zeros(2, 1, 28, 28)).shape == (32, 10)
    [m] = summarize(model, (1, 28, 28)).mismatches
    assert (m.name, m.has, m.needs, m.arrived) == ("linear1", 16, 256, (32, 16))
    assert "folded each image into 16 rows" in m.message()


def test_fixed_lesson_cnn_agrees_with_a_real_forward_pass():
    model = LessonCNN(linear_in=256)
    summary = summarize(model, (1, 28, 28))
    assert summary.ok and summary.mismatches == []
    seen = {}
    hooks = [
        m.register_forward_hook(lambda mod, a, out, n=n: seen.__setitem__(n, tuple(out.shape)))
        for n, m in model.named_children()
    ]
    model(torch.zeros(2, 1, 28, 28))
    for h in hooks:
        h.remove()
    assert {r.name: r.output_shape for r in summary.layers} == seen
    # 156 + 2,416 + 32,896 + 8,256 + 650
    assert summary.total_params == sum(p.numel() for p in model.parameters()) == 44_374
    assert sum(r.params for r in summary.layers) == summary.total_params
    assert summary.linear_needs() == [("linear1", 256, 256), ("linear2", 128, 128), ("linear3", 64, 64)]
    # MACs per image: conv = output positions x (in_channels x kernel area); linear = in x out
    expected = (6 * 24 * 24 * 1 * 25) + (16 * 8 * 8 * 6 * 25) + 256 * 128 + 128 * 64 + 64 * 10
    assert summary.total_macs == expected


def test_sequential_with_functional_free_parts_and_mode_restored():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(8 * 16 * 16, 10),
    )
    model.train()
    stats_before = model[1].running_mean.clone()
    summary = summarize(model, (3, 32, 32))
    assert model.training and torch.equal(model[1].running_mean, stats_before)
    assert [r.name for r in summary.layers] == [str(i) for i in range(7)]
    assert summary.layers[5].output_shape == (2, 2048)
    assert summary.output_shape == tuple(model.eval()(torch.zeros(2, 3, 32, 32)).shape)


def test_linear_over_last_dimension_is_not_a_mismatch():
    model = nn.Sequential(nn.Linear(8, 4))  # (B, T, D) input, as in sequence models
    summary = summarize(model, (5, 8))
    assert summary.ok and summary.output_shape == (2, 5, 4)
    assert summary.layers[0].macs == 5 * 8 * 4


def test_unflattened_input_to_linear():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Linear(4, 10))  # forgot to flatten
    [m] = summarize(model, (1, 8, 8)).mismatches
    assert (m.has, m.needs) == (4, 4 * 6 * 6) and "unflattened" in m.message()
    # the right in_features but no flatten: torch would fail on the last dimension (6 != 144)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Linear(144, 10))
    [m] = summarize(model, (1, 8, 8)).mismatches
    assert (m.has, m.needs) == (144, 144)
    assert m.message().startswith("1 (Linear) receives (B, 4, 6, 6): 144 features per image")
    assert m.message().endswith("; flatten with x.flatten(1) or nn.Flatten()")


def test_two_wrong_linears_are_both_reported():
    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 32), nn.Linear(16, 10))
    summary = summarize(model, (1, 28, 28))
    assert [(m.name, m.has, m.needs) for m in summary.mismatches] == [("1", 100, 784), ("2", 16, 32)]


def test_conv_channel_mismatch_names_the_layer():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(16, 8, 3))
    with pytest.raises(ShapeError, match=r"1 \(Conv2d\).*in_channels=16 but receives 8 channels"):
        summarize(model, (1, 28, 28))


def test_input_too_small_for_a_layer_names_the_layer():
    model = nn.Sequential(nn.Conv2d(1, 8, 5), nn.MaxPool2d(2), nn.Conv2d(8, 8, 5), nn.MaxPool2d(2))
    with pytest.raises(ShapeError, match=r"^2 \(Conv2d\) on input \(2, 8, 4, 4\): conv: axis h"):
        summarize(model, (1, 12, 12))


def test_other_forward_failures_are_one_line_naming_the_last_layer():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return F.linear(self.conv(x).flatten(1), torch.zeros(10, 7))  # functional: no hook

    with pytest.raises(ShapeError) as e:
        summarize(Broken(), (1, 28, 28))
    assert "after conv (output (B, 4, 26, 26))" in str(e.value) and "\n" not in str(e.value)


def test_shared_module_counted_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.fc(x))

    summary = summarize(Twice(), (4,))
    assert [r.params for r in summary.layers] == [20, 0] and summary.total_params == 20
    assert summary.total_macs == 2 * 16


def test_flatten_features_replaces_hand_computed_sizes():
    features = nn.Sequential(nn.Conv2d(1, 6, 5), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.MaxPool2d(2))
    assert flatten_features(features, (1, 28, 28)) == 16 * 4 * 4
    assert (
        flatten_features(features, (1, 32, 32))
        == 16 * 5 * 5
        == math.prod(features(torch.zeros(1, 1, 32, 32)).shape[1:])
    )


def test_bad_input_shape_and_format_shape():
    with pytest.raises(ShapeError, match="positive ints"):
        summarize(nn.Linear(4, 4), (0, 4))
    assert format_shape((2, 16, 4, 4), 2) == "(B, 16, 4, 4)"
    assert format_shape((32, 16), 2) == "(32, 16)"


# --- layer_shapes: summarize's rows by arithmetic -------------------------------------------


def rows_of(model: nn.Module, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """summarize's (name, output shape) rows: the oracle for layer_shapes."""
    return [(r.name, r.output_shape) for r in summarize(model, shape).layers]


class Residual(nn.Module):
    """A block that lists its forward's paths for layer_shapes."""

    shape_paths = (("conv", "bn"), ("shortcut",))

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + self.shortcut(x))


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 29, 37)])
def test_layer_shapes_agree_with_a_real_pass(shape):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2, dilation=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.Conv2d(8, 8, 3, padding="same"),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 12, 3, dilation=2, padding=(2, 1)),
        Residual(12, 16, 2),
        nn.Sequential(nn.Dropout(0.5), nn.Sequential()),
        nn.AdaptiveMaxPool2d((2, None)),
        nn.AdaptiveAvgPool2d((None, 1)),
        nn.Flatten(2),
        nn.Linear(2, 5),
        nn.Flatten(),
        nn.Identity(),
    )
    rows = layer_shapes(model, shape)
    assert rows == rows_of(model, shape)
    assert flatten_features(model, shape) == math.prod(model.eval()(torch.zeros(1, *shape)).shape[1:])


def test_layer_shapes_run_nothing_and_work_on_the_meta_device():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(864, 10))
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(m))
    assert layer_shapes(model, (1, 28, 28))[-1] == ("3", (2, 10))
    assert flatten_features(model[:2], (1, 28, 28)) == 6 * 12 * 12 and calls == []


def test_layer_shapes_say_none_for_what_they_cannot_read():
    assert layer_shapes(LessonCNN(linear_in=256), (1, 28, 28)) is None  # functional forward
    assert layer_shapes(nn.Sequential(nn.Upsample(scale_factor=2)), (1, 8, 8)) is None
    assert layer_shapes(nn.Sequential(nn.Flatten(), nn.Linear(10, 2)), (1, 4, 4)) is None  # mismatch
    assert layer_shapes(nn.Sequential(nn.BatchNorm2d(3)), (1, 4, 4)) is None  # torch would fail
    mismatched = Residual(4, 4, 1)
    mismatched.shortcut = nn.Conv2d(4, 4, 1, stride=2)  # the two paths no longer agree
    assert layer_shapes(mismatched, (4, 8, 8)) is None
    # flatten_features falls back to the real pass, so these still give sizes or summarize's errors
    assert flatten_features(LessonCNN(linear_in=256), (1, 28, 28)) == 10
    with pytest.raises(ShapeError, match="in_features=10 but each image brings 16"):
        flatten_features(nn.Sequential(nn.Flatten(), nn.Linear(10, 2)), (1, 4, 4))


@pytest.mark.parametrize(
    "model,shape",
    [
        (nn.Sequential(nn.Conv2d(1, 8, 5), nn.MaxPool2d(2), nn.Conv2d(8, 8, 5)), (1, 12, 12)),
        (nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(16, 8, 3)), (1, 28, 28)),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(4, padding=3)), (1, 28, 28)),
    ],
)
def test_layer_shapes_raise_summarizes_errors(model, shape):
    with pytest.raises(ShapeError) as oracle:
        summarize(model, shape)
    with pytest.raises(ShapeError) as arithmetic:
        layer_shapes(model, shape)
    assert str(arithmetic.value) == str(oracle.value)
