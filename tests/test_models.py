"""The model registry: every model, both input shapes; flatten sizes; MACs against a hand count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.models import (
    count_macs,
    count_parameters,
    flat_features,
    get_model,
    list_models,
    model_description,
    register_model,
)


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


def test_the_registry_has_the_issue_models():
    assert set(list_models()) >= {"mlp", "lesson-cnn", "lenet5", "cnn", "resnet"}


def test_lesson_cnn_faithful_form_flattens_to_the_lessons_16():
    model = get_model("lesson-cnn", channels=(6, 1))
    assert model.classifier.linear1.in_features == 16  # the lesson's x.reshape(-1, 4 * 4)
    assert flat_features(model.features, (1, 28, 28)) == 16
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


def test_flat_features_does_not_touch_batchnorm_statistics():
    model = get_model("cnn")
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == 0 and model.training


def test_bad_requests_raise_named_errors():
    with pytest.raises(ConfigError, match="unknown model 'vgg'.*mlp"):
        get_model("vgg")
    with pytest.raises(ConfigError, match="bad option"):
        get_model("cnn", depth=3)
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
