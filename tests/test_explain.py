"""explain: layers found for every registered model, maps checked against a hand-run forward,
saliency and occlusion checked on a model whose answer depends on one known region."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.explain import (
    conv_and_pool_layers,
    explain_image,
    feature_maps,
    first_layer_filters,
    occlusion_map,
    saliency_map,
)
from cnnlab.models import get_model, list_models
from cnnlab.predict import Predictor
from cnnlab.runs import load_run
from drawn import draw_digit
from test_predict import run_cli
from tiny_runs import make_run


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_has_its_layers_found(name):
    """Conv models list their convs and pools; maps have the shapes a forward pass gives."""
    model = get_model(name, (1, 28, 28), 10).eval()
    layers = conv_and_pool_layers(model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(ly.kind == "conv" for ly in layers) == len(convs)
    maps = feature_maps(model, torch.randn(2, 1, 28, 28))
    assert list(maps) == [ly.name for ly in layers]  # registration order is forward order
    for ly in layers:
        assert maps[ly.name].shape[0] == 2 and maps[ly.name].ndim == 4
    if name == "mlp":
        assert layers == [] and maps == {} and first_layer_filters(model) is None


def test_cnn_block_names_and_maps_match_a_hand_run_forward():
    model = get_model("cnn", (1, 28, 28), 10, stages=2).eval()  # two stages keep the hand run short
    assert [ly.name for ly in conv_and_pool_layers(model)] == [
        "features.conv1",
        "features.conv2",
        "features.pool1",
        "features.conv3",
        "features.conv4",
        "features.pool2",
    ]
    x = torch.randn(1, 1, 28, 28)
    maps = feature_maps(model, x)
    with torch.no_grad():
        f = model.features
        c1 = f.conv1(x)  # conv -> BN -> ReLU: the block's output
        p1 = f.pool1(f.conv2(c1))
        p2 = f.pool2(f.conv4(f.conv3(p1)))
    torch.testing.assert_close(maps["features.conv1"], c1)
    torch.testing.assert_close(maps["features.pool1"], p1)
    torch.testing.assert_close(maps["features.pool2"], p2)
    assert maps["features.pool1"].shape == (1, 16, 14, 14) and maps["features.pool2"].shape == (
        1,
        32,
        7,
        7,
    )
    assert (maps["features.conv1"] >= 0).all()  # after the ReLU


def test_lesson_cnn_conv_is_taken_after_its_relu():
    model = get_model("lesson-cnn", (1, 28, 28), 10).eval()
    layers = {ly.name: ly for ly in conv_and_pool_layers(model)}
    assert layers["features.conv1"].hooked == "features.relu1"
    assert "ReLU" in layers["features.conv1"].description
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        expected = torch.relu(model.features.conv1(x))
    torch.testing.assert_close(feature_maps(model, x, ["features.conv1"])["features.conv1"], expected)


def test_feature_maps_leave_the_model_untouched():
    model = get_model("cnn", (1, 28, 28), 10).eval()
    feature_maps(model, torch.randn(1, 1, 28, 28))
    assert all(not m._forward_hooks for m in model.modules())
    assert not model.training


def test_filters_are_the_first_conv_weights():
    model = get_model("lenet5", (1, 28, 28), 10)
    name, w, trained = first_layer_filters(model)
    assert name == "features.conv1" and torch.equal(w, model.features.conv1.weight.detach())
    assert trained
    # fast's whitening stem is set from the data and frozen: the figure must not call it learned
    assert not first_layer_filters(get_model("fast", stem="whiten")).trained


class RegionModel(nn.Module):
    """Class 0's score is the ink in the top-left 8x8 corner; class 1's is a constant."""

    def forward(self, x):
        corner = x[:, :, :8, :8].sum((1, 2, 3))
        return torch.stack([corner, torch.full_like(corner, 5.0)], 1)


def test_saliency_and_occlusion_find_the_region_that_decides():
    model = RegionModel()
    x = torch.zeros(1, 1, 28, 28)
    x[:, :, 2:6, 2:6] = 1.0  # 16 bright pixels in the corner: class 0 wins (16 > 5)
    x[:, :, 18:24, 18:24] = 1.0  # ink elsewhere that does not matter
    sal = saliency_map(model, x, 0)
    assert sal.shape == (28, 28) and sal.max() == 1
    assert sal[:8, :8].min() > 0.5 and sal[8:, :].max() == 0 and sal[:, 8:].max() == 0
    occ = occlusion_map(model, x, 0, fill=0.0, patch=4, stride=2)
    assert occ.shape == (28, 28)
    assert occ[2:6, 2:6].mean() > 0.1  # covering the corner ink costs probability
    assert occ[16:26, 16:26].abs().max() < 1e-6  # covering the other ink costs nothing


def test_explain_image_and_cli_write_readable_pngs(fake_dataset, tmp_path):
    run_dir = make_run(tmp_path / "run", "fake", "lesson-cnn", {"channels": (4, 6)}, epochs=1)
    predictor = Predictor(load_run(run_dir))
    e = explain_image(predictor, draw_digit(2), name="two.png")
    assert e.prediction.name == "two.png" and e.target == predictor.classes.index(e.prediction.label)
    assert list(e.maps) == ["features.conv1", "features.pool1", "features.conv2", "features.pool2"]
    assert e.maps["features.conv1"].shape == (4, 24, 24) and e.maps["features.pool2"].shape == (6, 4, 4)
    assert e.saliency.shape == e.occlusion.shape == (28, 28)
    image = tmp_path / "two.png"
    draw_digit(2).save(image)
    code, out, err = run_cli("explain", str(run_dir), str(image), "--out", str(tmp_path / "ex"))
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "ex").iterdir())
    assert files == [
        "01_input.png",
        "02_attribution.png",
        "03_filters.png",
        "04_conv_features.conv1.png",
        "05_pool_features.pool1.png",
        "06_conv_features.conv2.png",
        "07_pool_features.pool2.png",
    ]
    for name in files:
        with Image.open(tmp_path / "ex" / name) as img:
            assert img.format == "PNG" and img.width > 300
        assert name in out
    code, _, err = run_cli("explain", str(run_dir), str(tmp_path / "nothing.png"))
    assert code == 2 and "nothing.png" in err


def test_explain_an_mlp_says_there_are_no_feature_maps(fake_dataset, tmp_path):
    run_dir = make_run(tmp_path / "mlp", "fake", "mlp", {"hidden": [16]}, epochs=1)
    image = tmp_path / "seven.png"
    draw_digit(7).save(image)
    code, out, _ = run_cli("explain", str(run_dir), str(image), "--out", str(tmp_path / "ex"))
    assert code == 0 and "no convolution" in out
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == ["01_input.png", "02_attribution.png"]
