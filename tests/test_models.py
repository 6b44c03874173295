"""The model registry: every model, both input shapes; flatten sizes; MACs against a hand count;
options checked (type and range) so that hostile `--model-kwargs` or metadata give one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import cnnlab.models
from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layer_shapes import layer_shapes
from cnnlab.models import (
    count_macs,
    count_parameters,
    get_model,
    list_models,
    model_description,
    register_model,
)
from cnnlab.summary import flatten_features, summarize


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_a_batch_to_logits(name, shape):
    torch.manual_seed(0)
    model = get_model(name, input_shape=shape, num_classes=7)
    model.train()
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 7)
    assert torch.isfinite(out).all()
    out.sum().backward()  # gradients reach every parameter
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, *shape)).shape == (1, 7)
    assert count_parameters(model) > 0 and count_macs(model, shape) > 0
    assert model_description(name)


@pytest.mark.parametrize("name", list_models())
def test_every_model_at_its_defaults_takes_a_batch_of_2_and_is_sized_by_arithmetic(name):
    model = get_model(name).eval()  # the default input (1, 28, 28) and 10 classes
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    # the arithmetic that sizes it on the meta device agrees with a real pass, row by row
    rows = [(layer.name, layer.output_shape) for layer in summarize(model, (1, 28, 28)).layers]
    assert layer_shapes(model, (1, 28, 28)) == rows


def test_building_every_model_never_imports_dynamo():
    # ops on the meta device run PyTorch's Python decompositions, which import torch._dynamo
    code = (
        "import sys; from cnnlab.models import get_model, list_models; "
        "[get_model(n) for n in list_models()]; print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_registry_has_the_issue_models():
    assert set(list_models()) >= {"mlp", "lesson-cnn", "lenet5", "cnn", "resnet"}


def test_lesson_cnn_faithful_form_flattens_to_the_lessons_16():
    model = get_model("lesson-cnn", channels=(6, 1))
    assert model.classifier.linear1.in_features == 16  # the lesson's x.reshape(-1, 4 * 4)
    assert flatten_features(model.features, (1, 28, 28)) == 16
    names = dict(model.named_modules())
    assert isinstance(names["features.conv2"], nn.Conv2d)
    assert isinstance(names["features.pool2"], nn.MaxPool2d)


def test_mlp_is_the_lessons_simple_nn():
    model = get_model("mlp")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 256),
        (256, 128),
        (128, 64),
        (64, 10),
    ]
    assert [
        m.out_features for m in get_model("mlp", hidden=(32,)).modules() if isinstance(m, nn.Linear)
    ] == [32, 10]


def test_count_macs_matches_a_hand_count():
    # lesson-cnn (6, 1): conv1 24*24*6*25, conv2 8*8*1*6*25, linears 16*128 + 128*64 + 64*10
    expected = 24 * 24 * 6 * 25 + 8 * 8 * 6 * 25 + 16 * 128 + 128 * 64 + 64 * 10
    assert count_macs(get_model("lesson-cnn", channels=(6, 1)), (1, 28, 28)) == expected


def test_sizing_does_not_touch_batchnorm_statistics():
    model = get_model("cnn")
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == 0 and model.training


def test_bad_requests_raise_named_errors():
    with pytest.raises(ConfigError, match="unknown model 'vgg'.*mlp"):
        get_model("vgg")
    with pytest.raises(ConfigError, match="bad option 'depth': it takes width, stages, dropout"):
        get_model("cnn", depth=3)
    with pytest.raises(ConfigError, match="bad option 'width': it takes no options"):
        get_model("lenet5", width=3)
    with pytest.raises(ConfigError, match="input_shape"):
        get_model("cnn", input_shape=(28, 28))
    with pytest.raises(ShapeError, match="too small"):
        get_model("lesson-cnn", input_shape=(1, 8, 8))
    with pytest.raises(ConfigError, match="registered twice"):
        register_model("mlp", "again")(lambda shape, n: None)


def test_fast_learned_stem_keeps_the_layout_of_earlier_runs():
    # run folders saved before the whitening stem existed name `fast` with no options
    keys = set(get_model("fast").state_dict())
    assert {"features.conv1.weight", "features.conv1.bias", "classifier.1.weight"} <= keys
    assert all(p.requires_grad for p in get_model("fast").parameters())


def test_fast_channels_last_flatten_gives_the_same_logits_and_gradients():
    torch.manual_seed(0)
    plain = get_model("fast", widths=(8, 24, 64))
    fast_path = get_model("fast", widths=(8, 24, 64))
    fast_path.load_state_dict(plain.state_dict())
    fast_path = fast_path.to(memory_format=torch.channels_last)
    x = torch.randn(16, 1, 28, 28)
    out_plain = plain(x)
    out_cl = fast_path(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out_cl, out_plain, rtol=1e-4, atol=1e-5)
    out_plain.square().sum().backward()
    out_cl.square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), fast_path.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_whitening_stem_decorrelates_patches_and_pairs_signs():
    torch.manual_seed(0)
    model = get_model("fast", stem="whiten", widths=(12, 24, 64))
    conv1 = model.features.conv1
    assert not conv1.weight.requires_grad and conv1.bias is None
    assert count_parameters(model) == count_parameters(get_model("fast", widths=(12, 24, 64))) - 12 * 26
    # images with correlated pixels (smoothed noise), like digits
    # (scaled so that the 6 top eigenvalues are far above the 0.01 that damps the small ones)
    images = 20 * nn.functional.avg_pool2d(torch.randn(256, 1, 32, 32), 5, 1)  # (256, 1, 28, 28)
    model.init_from_data(images)
    w = conv1.weight
    torch.testing.assert_close(w[6:], -w[:6])  # each direction and its negative
    with torch.no_grad():
        out = nn.functional.conv2d(images - images.mean(), w[:6], stride=2)  # (B, 6, 12, 12)
    flat = out.transpose(0, 1).reshape(6, -1)
    cov = torch.cov(flat)
    # whitened: unit variance (eigenvalue / (eigenvalue + 0.01)) and no correlation
    torch.testing.assert_close(cov.diagonal(), torch.ones(6), atol=0.1, rtol=0)
    off = cov - torch.diag(cov.diagonal())
    assert off.abs().max() < 0.1


def test_fast_stem_options_are_checked():
    with pytest.raises(ConfigError, match="stem must be one of"):
        get_model("fast", stem="pca")
    with pytest.raises(ConfigError, match="even first width"):
        get_model("fast", stem="whiten", widths=(7, 24, 64))
    model = get_model("fast")  # a learned stem: init_from_data leaves it alone
    before = model.features.conv1.weight.clone()
    model.init_from_data(torch.randn(8, 1, 28, 28))
    torch.testing.assert_close(model.features.conv1.weight, before)


# --- hostile options (from --model-kwargs or a weights file's metadata) ----------------------


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        (
            "cnn",
            {"stages": 40},
            r"stages=40 is over the limit: stages must be an int from 1 to 4 \(each stage halves the "
            r"image: 28x28 is too small for more\)",
        ),  # was a RuntimeError traceback
        ("cnn", {"width": 1e100}, r"width=1e\+100: width must be an int from 1 to 4096$"),  # C++ text
        ("cnn", {"width": 4097}, "width=4097 is over the limit: width must be an int from 1 to 4096"),
        ("cnn", {"width": True}, "width=True: width must be an int"),
        ("cnn", {"width": 16.5}, "width=16.5: width must be an int"),
        ("cnn", {"stages": "3"}, "stages='3': stages must be an int from 1 to 4"),
        ("cnn", {"dropout": float("nan")}, "dropout=nan: dropout must be a number from 0 up to"),
        ("cnn", {"dropout": 1}, "dropout=1: dropout must be a number from 0 up to"),
        ("cnn", {"dropout": "0.1"}, "dropout='0.1'"),
        ("cnn", {"dropout": 10**400}, r"dropout=1000.*\.\.\.: dropout must be a number"),
        (
            "mlp",
            {"hidden": "256"},
            "hidden=.256.: hidden must be a list of 1 to 64 ints, each from 1 to",
        ),
        ("mlp", {"hidden": []}, r"hidden=\[\]: hidden must be a list of 1 to 64 ints"),
        (
            "mlp",
            {"hidden": [256, 10**6]},
            r"hidden=\[256, 1000000\] is over the limit: .*each from 1 to 4096",
        ),
        (
            "mlp",
            {"hidden": [8] * 65},
            r"hidden=\[8, 8, 8, .*\.\.\. is over the limit: hidden must be a list of 1 to 64",
        ),
        ("mlp", {"hidden": [8, None]}, r"hidden=\[8, None\]"),
        ("lesson-cnn", {"channels": [6, 1, 1]}, "channels must be a list of 2 ints"),
        ("lesson-cnn", {"channels": [6, 0]}, r"channels=\[6, 0\]: channels must be a list of 2 ints"),
        ("fast", {"widths": [8, 24]}, "widths must be a list of 3 ints, each from 1 to 4096"),
        ("fast", {"widths": [8, 24, 1e9]}, "widths must be a list of 3 ints"),
        ("fast", {"stem": 1}, "stem=1: stem must be one of learned, whiten"),
        ("resnet", {"widths": [16] * 65}, "widths must be a list of 1 to 64 ints"),
        (
            "resnet",
            {"widths": [16, 32], "blocks": 33},
            r"blocks=33 is over the limit: blocks must be an int from 1 to 32 \(2 stages x blocks",
        ),
        (
            "resnet",
            {"blocks": 10**12},
            "blocks=1000000000000 is over the limit: blocks must be an int from 1 to 21",
        ),
    ],
)
def test_every_option_is_checked_with_a_one_line_config_error(name, kwargs, match):
    with pytest.raises(ConfigError, match=match) as e:
        get_model(name, **kwargs)
    message = str(e.value)
    assert message.startswith(f"model {name!r}: bad option ") and "\n" not in message


def test_stages_are_limited_by_the_input_size():
    assert len(get_model("cnn", input_shape=(1, 16, 40), stages=4).features) == 4 * 3  # 16 -> 1
    with pytest.raises(
        ConfigError, match="stages=5 is over the limit: stages must be an int from 1 to 4"
    ):
        get_model("cnn", input_shape=(1, 16, 40), stages=5)
    with pytest.raises(ConfigError, match="2x2 is too small for more"):
        get_model("cnn", input_shape=(1, 2, 2))  # the default 3 stages
    with pytest.raises(ShapeError, match="too small"):
        get_model("cnn", input_shape=(1, 1, 1), stages=1)  # not even one pooling


def test_options_in_range_still_meet_the_parameter_budget():
    with pytest.raises(ConfigError, match="parameters, over the limit of 100,000,000"):
        get_model("cnn", width=4096, stages=4)  # sized on the meta device: no memory


def test_any_other_failure_of_a_builder_becomes_one_line(monkeypatch):
    def broken(input_shape, num_classes):
        raise RuntimeError("Storage size calculation overflowed\nException raised from c10 at x.cpp")

    monkeypatch.setitem(cnnlab.models._REGISTRY, "broken", (broken, "raises"))
    with pytest.raises(ConfigError) as e:
        get_model("broken")
    assert str(e.value) == "model 'broken': bad option (Storage size calculation overflowed)"
