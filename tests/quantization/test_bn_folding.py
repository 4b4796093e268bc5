"""Batch-norm folding, statistics hand-over and generic module fusion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from distiller.errors import GraphError, QuantizationError
from distiller.models import create_model
from distiller.quantization.bn_folding import fold_batch_norms, fuse_modules, move_folded_stats
from distiller.quantization.modularize import modularize


def _input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _randomize_bns(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that folding really changes weights."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm | FrozenBatchNorm2d) and m.running_mean is not None:
                n = m.running_mean.numel()
                m.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    m.bias.copy_(torch.rand(n, generator=generator) - 0.5)
    return model


def _check_fold(model: nn.Module, x: torch.Tensor, expected: list[tuple[str, str]], **kwargs) -> None:
    model = _randomize_bns(model).eval()
    with torch.no_grad():
        before = model(x)
    assert fold_batch_norms(model, x, **kwargs) == expected
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-5)
    for layer, bn in expected:
        assert isinstance(model.get_submodule(bn), nn.Identity)
        assert model.get_submodule(layer).fused_modules == [bn]
        assert model.get_submodule(layer).bias is not None


@pytest.mark.parametrize(
    ("layers", "shape"),
    [
        pytest.param([nn.Conv1d(3, 5, 3), nn.BatchNorm1d(5)], (2, 3, 9), id="conv1d"),
        pytest.param([nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5)], (2, 3, 7, 7), id="conv2d"),
        pytest.param([nn.Conv3d(3, 5, 3), nn.BatchNorm3d(5)], (2, 3, 5, 5, 5), id="conv3d"),
        pytest.param([nn.Linear(6, 5), nn.BatchNorm1d(5)], (4, 6), id="linear"),
        pytest.param([nn.Conv2d(4, 4, 3, groups=4), nn.BatchNorm2d(4)], (2, 4, 6, 6), id="depthwise"),
        pytest.param([nn.Conv2d(4, 6, 3, groups=2), nn.BatchNorm2d(6)], (2, 4, 6, 6), id="grouped"),
        pytest.param([nn.Conv2d(3, 5, 3, bias=False), nn.BatchNorm2d(5)], (2, 3, 6, 6), id="no-bias"),
        pytest.param([nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5, affine=False)], (2, 3, 6, 6), id="bn-not-affine"),
        pytest.param([nn.Conv2d(3, 5, 3, bias=False), FrozenBatchNorm2d(5)], (2, 3, 6, 6), id="frozen-bn"),
    ],
)
def test_fold_keeps_the_output(layers, shape):
    _check_fold(nn.Sequential(*layers, nn.ReLU()), _input(*shape), [("0", "1")])


def test_fold_without_example_input_and_on_plain_modules():
    model = _randomize_bns(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))).eval()
    x = _input(1, 3, 5, 5)
    before = model(x)
    assert fold_batch_norms(model) == [("0", "1")]
    assert torch.allclose(before, model(x), atol=1e-5)


class _ConvTwoConsumers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class _FunctionalReluBetween(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(F.relu(self.conv(x)))


class _SharedBn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)) + self.bn(x)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        pytest.param(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)), (1, 3, 6, 6), id="relu-between"),
        pytest.param(_FunctionalReluBetween(), (1, 3, 6, 6), id="functional-relu-between"),
        pytest.param(
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)),
            (2, 3, 6, 6),
            id="no-running-stats",
        ),
        pytest.param(_ConvTwoConsumers(), (1, 3, 6, 6), id="conv-output-has-two-consumers"),
        pytest.param(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3)), (1, 3, 6, 6), id="bn-before-conv"),
        pytest.param(_SharedBn(), (1, 4, 6, 6), id="bn-called-twice"),
        pytest.param(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), (2, 4, 4), id="linear-3d-output"),
    ],
)
def test_no_fold(model, shape):
    model = _randomize_bns(model).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert fold_batch_norms(model, _input(*shape)) == []
    assert not any(isinstance(m, nn.Identity) for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_resnet20_cifar_all_batch_norms_folded():
    model = _randomize_bns(create_model("resnet20_cifar")).eval()
    x = _input(2, 3, 32, 32)
    n_bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        before = model(x)
    pairs = fold_batch_norms(model, x)
    assert len(pairs) == n_bns == 21
    assert ("layer1.0.conv1", "layer1.0.bn1") in pairs and ("layer2.0.downsample.0", "layer2.0.downsample.1") in pairs
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(before, model(x), atol=1e-4, rtol=1e-4)


def test_torchvision_resnet18_after_modularize():
    torch.manual_seed(0)
    model = _randomize_bns(torchvision.models.resnet18()).eval()
    x = _input(1, 3, 64, 64)
    gm = modularize(model, x)
    pairs = fold_batch_norms(gm)
    assert len(pairs) == 20 and pairs[0] == ("conv1", "bn1")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gm.modules())
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(expected, gm(x), atol=1e-4, rtol=1e-4)
    # the original model is untouched
    assert isinstance(model.bn1, nn.BatchNorm2d)


def test_qat_folding_is_not_there_yet():
    with pytest.raises(QuantizationError, match="inference=True"):
        fold_batch_norms(nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)), inference=False)


def test_move_folded_stats():
    stats = {
        "module.conv": {"inputs": {0: {"min": -1.0}}, "output": {"min": -5.0, "max": 5.0}},
        "bn": {"inputs": {0: {"min": -5.0}}, "output": {"min": -2.0, "max": 3.0}},
        "fc": {"inputs": {0: {"min": 0.0}}, "output": {"min": 0.0, "max": 1.0}},
    }
    moved = move_folded_stats(stats, [("conv", "bn"), ("fc", "bn_not_collected")])
    assert moved["module.conv"] == {"inputs": {0: {"min": -1.0}}, "output": {"min": -2.0, "max": 3.0}}
    assert "bn" not in moved and moved["fc"] == stats["fc"]
    assert stats["bn"]["output"]["max"] == 3.0 and stats["module.conv"]["output"]["max"] == 5.0
    moved["module.conv"]["output"]["max"] = 0
    assert stats["bn"]["output"]["max"] == 3.0  # a deep copy
    with pytest.raises(QuantizationError, match="'bn'"):
        move_folded_stats({"bn": {"inputs": {}}}, [("conv", "bn")])


class _ConvReLU(nn.Sequential):
    pass


def test_fuse_modules_conv_relu():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
    ).eval()
    x = _input(1, 3, 8, 8)
    before = model(x)
    fused = fuse_modules(model, (nn.Conv2d, (nn.ReLU, nn.ReLU6)), lambda seq: _ConvReLU(*seq), x)
    assert fused == [["0", "1"], ["2", "3"]]
    assert isinstance(model[0], _ConvReLU) and model[0].fused_modules == ["1"]
    assert isinstance(model[1], nn.Identity) and isinstance(model[3], nn.Identity)
    assert isinstance(model[4], nn.Conv2d)
    assert torch.equal(before, model(x))
    # a fusion function may refuse a sequence
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert fuse_modules(other, (nn.Conv2d, nn.ReLU), lambda seq: None, x) == []
    assert isinstance(other[1], nn.ReLU)


def test_fuse_modules_does_not_cross_branches():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = self.conv(x)
            return self.relu(y) + self.conv2(y)

    model = Branchy().eval()
    assert fuse_modules(model, (nn.Conv2d, nn.ReLU), lambda seq: _ConvReLU(*seq), _input(1, 3, 5, 5)) == []


class _Untraceable(nn.Module):
    def __init__(self, reuse_conv_output: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.reuse = reuse_conv_output

    def forward(self, x):
        if x.sum() > -1e9:  # data-dependent control flow: torch.fx cannot trace this
            y = self.conv(x)
            z = self.bn(y)
            return z + y if self.reuse else z
        return x


def test_untraceable_models_fold_from_hooks_and_check_the_output():
    x = _input(1, 3, 6, 6)
    model = _randomize_bns(_Untraceable(reuse_conv_output=False)).eval()
    before = model(x)
    assert fold_batch_norms(model, x) == [("conv", "bn")]
    assert torch.allclose(before, model(x), atol=1e-5)
    # the conv output is also used by a functional op the hooks cannot see: the fold is undone
    model = _randomize_bns(_Untraceable(reuse_conv_output=True)).eval()
    before = model(x)
    assert fold_batch_norms(model, x) == []
    assert isinstance(model.bn, nn.BatchNorm2d)
    assert torch.equal(before, model(x))
    with pytest.raises(GraphError, match="pass example_input"):
        fold_batch_norms(_Untraceable(reuse_conv_output=False))
