"""The base ``Quantizer`` (per-module bits from regex overrides) and ``PostTrainLinearQuantizer.prepare_model``.

After the original's ``test_quantizer.py`` (override resolution, replacement functions, shared modules)
and the statistics-fusion part of ``test_post_train_quant.py`` (BN folding, activation clipping, ReLU
fusion), on small models whose expected statistics are written out, plus the original ResNet-18 sample
config with its statistics file.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from distiller.errors import ConfigError, QuantizationError
from distiller.models import create_model
from distiller.modules import EltwiseAdd
from distiller.quantization import PostTrainLinearQuantizer, QBits, Quantizer, quantize, quantizer_config_from_file
from distiller.quantization.modes import ClipMode, LinearQuantMode
from distiller.quantization.wrappers import (
    RangeLinearFakeQuantWrapper,
    RangeLinearQuantEltwiseAddWrapper,
    RangeLinearQuantParamLayerWrapper,
    WeightsOnlyQuantWrapper,
)
from shared_data import ORIGINAL_SAMPLES, require

# ---------------------------------------------------------------------------------------------
# Base Quantizer: bits per module from overrides
# ---------------------------------------------------------------------------------------------


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv1(x))


class _Net(nn.Module):
    """conv1 -> layer1 (conv1, relu) -> mean -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 1)
        self.layer1 = _Block()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer1(self.conv1(x)).mean((2, 3)))


def _qbits(model: nn.Module, **kwargs) -> dict[str, QBits]:  # noqa: ANN003
    return Quantizer(model, bits_activations=8, bits_weights=8, bits_bias=32, **kwargs).module_qbits_map


def test_defaults_apply_and_only_parameter_layers_get_weight_bits():
    bits = _qbits(_Net())
    assert bits["conv1"] == QBits(8, 8, 32)
    assert bits["layer1.conv1"] == QBits(8, 8, 32)
    assert bits["layer1.relu"] == QBits(8, None, None)
    assert bits["fc"] == QBits(8, 8, 32)


def test_first_matching_override_wins():
    overrides = OrderedDict(
        [
            (r"layer1\..*", {"bits_weights": 4, "bits_activations": 6}),
            (r"layer1\.conv1", {"bits_weights": 2}),  # never used: the pattern above matches first
            (r".*conv1", {"bits_weights": 3}),
        ]
    )
    bits = _qbits(_Net(), overrides=overrides)
    assert bits["layer1.conv1"] == QBits(6, 4, 32)
    assert bits["layer1.relu"] == QBits(6, None, None)
    assert bits["conv1"] == QBits(8, 3, 32)


def test_patterns_are_anchored_at_both_ends():
    # `conv1` is the top-level conv1 only: not `layer1.conv1` (no search), not `conv10` (no prefix match)
    bits = _qbits(_Net(), overrides={"conv1": {"bits_weights": 4}, "fc.": {"bits_weights": 2}})
    assert bits["conv1"].wts == 4
    assert bits["layer1.conv1"].wts == 8
    assert bits["fc"].wts == 8  # "fc." needs one more character


def test_dataparallel_module_prefix_is_stripped_before_matching():
    model = nn.DataParallel(_Net())
    q = Quantizer(model, bits_activations=8, bits_weights=8, overrides={r"layer1\.conv1": {"bits_weights": 4}})
    assert q.matching_pattern("module.layer1.conv1") == r"layer1\.conv1"
    assert q.module_qbits_map["layer1.conv1"].wts == 4
    assert not any(name.startswith("module") for name in q.module_qbits_map)


def test_null_bits_keep_a_module_float():
    bits = _qbits(_Net(), overrides={"fc": {"bits_activations": None, "bits_weights": None, "bits_bias": None}})
    assert bits["fc"] == QBits(None, None, None)


def test_unused_overrides_are_reported():
    q = Quantizer(_Net(), overrides={"conv1": {}, "layer2.*": {}})
    assert q.unused_overrides() == ["layer2.*"]


def test_overrides_must_be_a_mapping():
    with pytest.raises(TypeError, match="mapping"):
        Quantizer(_Net(), overrides=[("conv1", {})])


def test_invalid_regex_is_a_config_error():
    with pytest.raises(ConfigError, match=r"layer1.*\(' is not a valid regular expression"):
        Quantizer(_Net(), overrides={r"layer1\.(": {"bits_weights": 4}})


@pytest.mark.parametrize("bits", [0, 33, 8.0, True, "8"])
def test_bits_must_be_integers_in_1_to_32(bits):
    with pytest.raises(ConfigError, match="bits_activations"):
        Quantizer(_Net(), bits_activations=bits)
    with pytest.raises(ConfigError, match=r"overrides\.fc\.bits_weights"):
        Quantizer(_Net(), overrides={"fc": {"bits_weights": bits}})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bits_activations": 0},
        {"bits_parameters": 33},
        {"bits_accum": 64},
        {"overrides": {"fc": {"bits_weights": 2.5}}},
    ],
    ids=["acts", "params", "accum", "override"],
)
def test_ptq_validates_bits(kwargs):
    with pytest.raises(ConfigError, match="number of bits must be an integer in 1..32"):
        PostTrainLinearQuantizer(_Net(), **kwargs)


class _Tagged(nn.Module):
    """What the dummy quantizer puts in place of a module."""

    def __init__(self, inner: nn.Module, tag: str = "") -> None:
        super().__init__()
        self.inner = inner
        self.tag = tag

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class _DummyQuantizer(Quantizer):
    def __init__(self, model: nn.Module, **kwargs) -> None:  # noqa: ANN003
        super().__init__(model, bits_activations=8, bits_weights=8, **kwargs)
        self.replacement_factory[nn.Conv2d] = self._replace_conv
        self.replacement_factory[nn.ReLU] = lambda module, name, qbits_map: _Tagged(module, "relu")

    @staticmethod
    def _replace_conv(module: nn.Module, name: str, qbits_map: dict[str, QBits], tag: str = "conv") -> nn.Module:
        if qbits_map[name].wts is None:
            return module
        return _Tagged(module, tag)


def test_prepare_model_replaces_by_type_and_passes_override_settings():
    model = _Net()
    q = _DummyQuantizer(model, overrides={r"layer1\.conv1": {"tag": "special"}, "conv1": {"bits_weights": None}})
    q.prepare_model()
    assert isinstance(model.conv1, nn.Conv2d)  # null bits: the replacement function keeps it
    assert isinstance(model.layer1.conv1, _Tagged) and model.layer1.conv1.tag == "special"
    assert isinstance(model.layer1.relu, _Tagged) and model.layer1.relu.tag == "relu"
    assert isinstance(model.fc, nn.Linear)  # no replacement function for Linear
    assert list(q.modules_replaced) == ["layer1.conv1", "layer1.relu"]
    with pytest.raises(QuantizationError, match="already"):
        q.prepare_model()


def test_unknown_override_setting_names_the_pattern_and_lists_valid_settings():
    q = _DummyQuantizer(_Net(), overrides={r"layer1\..*": {"colour": "red"}})
    with pytest.raises(ConfigError) as info:
        q.prepare_model()
    message = str(info.value)
    assert r"overrides.layer1\..*" in message and "colour" in message
    assert "valid settings: tag" in message


def test_ptq_unknown_override_setting_lists_the_wrapper_settings():
    q = PostTrainLinearQuantizer(_Net().eval(), overrides={"fc": {"per_channel": True}})
    with pytest.raises(ConfigError) as info:
        q.prepare_model(torch.randn(1, 2, 3, 3))
    message = str(info.value)
    assert "overrides.fc" in message and "per_channel" in message
    for setting in ("clip_acts", "mode", "per_channel_wts", "input_overrides"):
        assert setting in message


class _SharedChild(nn.Module):
    def __init__(self, child: nn.Module) -> None:
        super().__init__()
        self.conv = child

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Untraceable(nn.Module):
    """One conv shared by two sub-modules; data-dependent control flow defeats torch.fx."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(2, 2, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[0.5, -1.0], [1.2, 2.55]]).view(2, 2, 1, 1))
            conv.bias.zero_()
        self.sub1 = _SharedChild(conv)
        self.sub2 = _SharedChild(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1e9:  # always true, but torch.fx cannot trace it
            x = self.sub1(x)
        return self.sub2(x)


def test_a_module_shared_by_two_parents_is_replaced_once():
    model = _Untraceable().eval()
    x = torch.tensor([[1.0, -0.4], [2.0, 0.3]]).view(1, 2, 2, 1)
    with torch.no_grad():
        expected = model(x)
    q = PostTrainLinearQuantizer(model)  # dynamic mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = q.prepare_model(x)
    assert prepared.sub1.conv is prepared.sub2.conv
    assert float(prepared.sub2.conv.w_scale) == 50.0
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), expected, rtol=0.05, atol=0.1)


# ---------------------------------------------------------------------------------------------
# PostTrainLinearQuantizer.prepare_model: BN folding, statistics clipping, ReLU fusion
# ---------------------------------------------------------------------------------------------


def _entry(lo: float, hi: float) -> dict[str, float]:
    return {"min": lo, "max": hi, "avg_min": lo / 2, "avg_max": hi / 2}


class _ConvBnReluConvReluAdd(nn.Module):
    """conv1 -> bn1 -> relu1 -> conv2 -> relu2; add(relu1, relu2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 1)
        self.bn1 = nn.BatchNorm2d(2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.relu2 = nn.ReLU()
        self.add = EltwiseAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        return self.add(y, self.relu2(self.conv2(y)))


SMALL_STATS = {
    "conv1": {"inputs": {0: _entry(-1, 1)}, "output": _entry(-10, 10)},
    "bn1": {"inputs": {0: _entry(-10, 10)}, "output": _entry(-3, 5)},
    "relu1": {"inputs": {0: _entry(-3, 5)}, "output": _entry(0, 5)},
    "conv2": {"inputs": {0: _entry(0, 5)}, "output": _entry(-4, 2)},
    "relu2": {"inputs": {0: _entry(-4, 2)}, "output": _entry(0, 2)},
    "add": {"inputs": {0: _entry(0, 5), 1: _entry(0, 2)}, "output": _entry(0, 6)},
}


@pytest.fixture
def small_prepared():
    torch.manual_seed(0)
    model = _ConvBnReluConvReluAdd().eval()
    with torch.no_grad():
        model.bn1.running_mean.copy_(torch.tensor([0.2, -0.3]))
        model.bn1.running_var.copy_(torch.tensor([1.5, 0.8]))
    q = PostTrainLinearQuantizer(model, model_activation_stats=SMALL_STATS)
    prepared = q.prepare_model(torch.randn(1, 2, 3, 3))
    return q, prepared


def test_bn_is_folded_and_its_statistics_move_to_the_conv(small_prepared):
    q, prepared = small_prepared
    assert q.folded_pairs == [("conv1", "bn1")]
    assert isinstance(prepared.bn1, nn.Identity)
    stats = q.model_activation_stats
    assert "bn1" not in stats
    # bn1's output range [-3, 5] (not conv1's own [-10, 10]), then clipped by relu1 to [0, 5]
    assert stats["conv1"]["output"] == {"min": 0.0, "max": 5.0, "avg_min": 0.0, "avg_max": 2.5}
    assert stats["conv1"]["inputs"][0] == _entry(-1, 1)  # the conv keeps its input statistics


def test_relus_are_fused_into_their_producers(small_prepared):
    q, prepared = small_prepared
    assert isinstance(prepared.relu1, nn.Identity) and isinstance(prepared.relu2, nn.Identity)
    for name in ("conv1", "conv2"):
        wrapper = prepared.get_submodule(name)
        assert isinstance(wrapper, RangeLinearQuantParamLayerWrapper)
        assert wrapper.output_settings.clip_half_range
        # symmetric + half range -> the unsigned grid: scale 255 / max, zero point 0
        assert wrapper.output_settings.mode == LinearQuantMode.ASYMMETRIC_UNSIGNED
    assert float(prepared.conv1.output_scale) == 255 / 5  # [0, 5]
    assert float(prepared.conv2.output_scale) == 255 / 2  # conv2's [-4, 2] clipped by relu2 to [0, 2]
    assert q.model_activation_stats["conv2"]["output"] == {"min": 0.0, "max": 2.0, "avg_min": 0.0, "avg_max": 1.0}
    add = prepared.add
    assert isinstance(add, RangeLinearQuantEltwiseAddWrapper)
    assert not add.output_settings.clip_half_range  # nothing follows the add
    assert float(add.output_scale) == 127.5 / 6
    assert prepared(torch.randn(2, 2, 3, 3)).shape == (2, 2, 3, 3)


def test_user_settings_survive_the_relu_fusion():
    model = _ConvBnReluConvReluAdd().eval()
    q = PostTrainLinearQuantizer(model, model_activation_stats=SMALL_STATS, overrides={"conv.*": {"clip_acts": "AVG"}})
    prepared = q.prepare_model(torch.randn(1, 2, 3, 3))
    assert prepared.conv1.output_settings.clip_mode == ClipMode.AVG
    assert prepared.conv1.output_settings.clip_half_range
    assert float(prepared.conv1.output_scale) == 255 / 2.5  # avg range [0, 2.5]


def test_relu_fusion_keeps_first_match_wins():
    model = _ConvBnReluConvReluAdd().eval()
    overrides = OrderedDict([(".*", {"bits_activations": 6}), ("conv1", {"bits_activations": 4})])
    q = PostTrainLinearQuantizer(model, model_activation_stats=SMALL_STATS, overrides=overrides)
    assert q.module_qbits("conv1", model.conv1).acts == 6
    prepared = q.prepare_model(torch.randn(1, 2, 3, 3))
    assert prepared.conv1.output_settings.num_bits == 6


def test_null_bits_keep_modules_float_in_ptq():
    model = _ConvBnReluConvReluAdd().eval()
    overrides = {"conv2": {"bits_activations": None, "bits_weights": None}, "add": {"bits_activations": None}}
    stats = {k: v for k, v in SMALL_STATS.items() if k not in ("conv2", "add")}  # not needed for float modules
    q = PostTrainLinearQuantizer(model, model_activation_stats=stats, overrides=overrides)
    prepared = q.prepare_model(torch.randn(1, 2, 3, 3))
    assert type(prepared.conv2) is nn.Conv2d
    assert type(prepared.add) is EltwiseAdd
    # relu2 is not fused into a float conv2: it is quantized on its own
    assert isinstance(prepared.relu2, RangeLinearFakeQuantWrapper)
    assert isinstance(prepared.conv1, RangeLinearQuantParamLayerWrapper)


def test_weights_only_override():
    model = _ConvBnReluConvReluAdd().eval()
    q = PostTrainLinearQuantizer(
        model, model_activation_stats=SMALL_STATS, overrides={"conv2": {"bits_activations": None}}
    )
    prepared = q.prepare_model(torch.randn(1, 2, 3, 3))
    assert isinstance(prepared.conv2, WeightsOnlyQuantWrapper)


def test_missing_statistics_name_the_module_and_close_names():
    stats = {k: v for k, v in SMALL_STATS.items() if k != "conv2"}
    q = PostTrainLinearQuantizer(_ConvBnReluConvReluAdd().eval(), model_activation_stats=stats)
    with pytest.raises(QuantizationError) as info:
        q.prepare_model(torch.randn(1, 2, 3, 3))
    message = str(info.value)
    assert "'conv2'" in message
    assert "close names:" in message and "conv1" in message
    assert "bits_activations: null" in message


class _Activations(nn.Module):
    """fc1 -> tanh -> fc2 -> sigmoid -> fc3 -> relu6."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.tanh = nn.Linear(2, 2), nn.Tanh()
        self.fc2, self.sigmoid = nn.Linear(2, 2), nn.Sigmoid()
        self.fc3, self.relu6 = nn.Linear(2, 2), nn.ReLU6()
        self.fc4, self.relu6b = nn.Linear(2, 2), nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sigmoid(self.fc2(self.tanh(self.fc1(x))))
        return self.relu6b(self.fc4(self.relu6(self.fc3(x))))


def test_activation_statistics_are_clipped_by_the_following_activation():
    def entry(lo: float, hi: float, avg_lo: float, avg_hi: float) -> dict[str, float]:
        return {"min": lo, "max": hi, "avg_min": avg_lo, "avg_max": avg_hi}

    stats = {
        "fc1": {"inputs": {0: entry(-1, 1, -1, 1)}, "output": entry(-10, 10, -5, 3)},
        "tanh": {"inputs": {0: entry(-10, 10, -5, 3)}, "output": entry(-1, 1, -1, 1)},
        "fc2": {"inputs": {0: entry(-1, 1, -1, 1)}, "output": entry(-20, 3, -8, 2)},
        "sigmoid": {"inputs": {0: entry(-20, 3, -8, 2)}, "output": entry(0, 1, 0, 1)},
        "fc3": {"inputs": {0: entry(0, 1, 0, 1)}, "output": entry(-2, 9, -1, 7)},
        "relu6": {"inputs": {0: entry(-2, 9, -1, 7)}, "output": entry(0, 6, 0, 6)},
        "fc4": {"inputs": {0: entry(0, 6, 0, 6)}, "output": entry(-2, 4, -1, 3)},
        "relu6b": {"inputs": {0: entry(-2, 4, -1, 3)}, "output": entry(0, 4, 0, 3)},
    }
    q = PostTrainLinearQuantizer(_Activations().eval(), model_activation_stats=stats)
    prepared = q.prepare_model(torch.randn(1, 2))
    after = q.model_activation_stats
    assert after["fc1"]["output"] == entry(-4, 4, -4, 3)  # Tanh: [-4, 4]
    assert after["fc2"]["output"] == entry(-6, 3, -6, 2)  # Sigmoid: [-6, 6]
    assert after["fc3"]["output"] == entry(0, 6, 0, 6)  # ReLU6: [0, min(max, 6)]
    assert after["fc4"]["output"] == entry(0, 4, 0, 3)  # ReLU6 with max < 6: [0, max]
    assert after["tanh"]["output"] == entry(-1, 1, -1, 1)  # the activations' own statistics are unchanged
    # Tanh and Sigmoid stay (fake-quantized); the ReLU6s are fused (static mode: the range clamps at 6)
    assert isinstance(prepared.tanh, RangeLinearFakeQuantWrapper)
    assert isinstance(prepared.sigmoid, RangeLinearFakeQuantWrapper)
    assert isinstance(prepared.relu6, nn.Identity) and prepared.fc3.output_settings.clip_half_range
    assert float(prepared.fc3.output_scale) == 255 / 6


def test_dynamic_mode_does_not_fuse_relu6():
    q = PostTrainLinearQuantizer(_Activations().eval())
    prepared = q.prepare_model(torch.randn(1, 2))
    assert isinstance(prepared.relu6, RangeLinearFakeQuantWrapper)
    assert not prepared.fc3.output_settings.clip_half_range


def test_prepare_model_needs_a_dummy_input():
    with pytest.raises(QuantizationError, match="dummy input"):
        PostTrainLinearQuantizer(_ConvBnReluConvReluAdd().eval()).prepare_model()


# ---------------------------------------------------------------------------------------------
# Real models
# ---------------------------------------------------------------------------------------------


def test_torchvision_resnet18_is_modularized_with_eltwise_add_wrappers():
    # torchvision's BasicBlock writes `out += identity` and calls self.relu twice.
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 32, 32)
    qm = quantize(model, {}, example_input=x)  # dynamic mode: the structure is the same as with statistics
    names = dict(qm.named_modules())
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    for block in blocks:
        assert isinstance(names[f"{block}.add"], RangeLinearQuantEltwiseAddWrapper)
        assert names[f"{block}.add"].output_settings.clip_half_range  # the second relu call is fused into it
        assert isinstance(names[f"{block}.relu#1"], nn.Identity)  # the copy made for the second call
        assert isinstance(names[f"{block}.relu"], nn.Identity)  # fused into conv1
        assert names[f"{block}.relu"] is not names[f"{block}.relu#1"]
    assert isinstance(names["layer2.0.downsample.0"], RangeLinearQuantParamLayerWrapper)
    assert isinstance(names["layer2.0.downsample.1"], nn.Identity)  # folded BN
    assert isinstance(model.layer1[0].relu, nn.ReLU)  # the caller's model is unchanged
    with torch.no_grad():
        assert qm(x).shape == (2, 1000)


SAMPLE_CONFIG = ORIGINAL_SAMPLES / "resnet18_imagenet_post_train.yaml"


def test_original_sample_config_builds_prepares_and_takes_run6_overrides():
    # The file's settings (6 bits, asymmetric unsigned, per-channel weights, AVG clipping, the statistics file
    # found next to the config) with the overrides of run 6 of its table, given as a dict: first and last
    # layers and the element-wise adds in 8 bits, fc unclipped.
    cfg = quantizer_config_from_file(require(SAMPLE_CONFIG))
    assert cfg["model_activation_stats"].endswith("resnet18_quant_stats.yaml")
    overrides = {
        "conv1": {"bits_weights": 8, "bits_activations": 8},
        ".*add": {"bits_weights": 8, "bits_activations": 8},
        "fc": {"bits_weights": 8, "bits_activations": 8, "clip_acts": "NONE"},
    }
    q = PostTrainLinearQuantizer(create_model("resnet18"), **cfg, overrides=overrides)
    prepared = q.prepare_model(torch.randn(1, 3, 224, 224))
    modules = dict(prepared.named_modules())

    # the file's settings, where no override applies
    conv = modules["layer1.0.conv1"]  # `conv1` is anchored: not this one
    assert isinstance(conv, RangeLinearQuantParamLayerWrapper)
    assert conv.output_settings.num_bits == 6 and conv.weight_settings.num_bits == 6
    assert conv.output_settings.mode == LinearQuantMode.ASYMMETRIC_UNSIGNED
    assert conv.output_settings.clip_mode == ClipMode.AVG and conv.output_settings.clip_half_range
    assert conv.weight_settings.per_channel and conv.w_scale.shape == (64,)
    assert isinstance(modules["layer1.0.bn1"], nn.Identity) and isinstance(modules["layer1.0.relu1"], nn.Identity)
    # layer1.0.conv1 takes layer1.0.bn1's statistics, clipped by relu1: AVG, half range, 6 bits: 63 / avg_max
    out = q.model_activation_stats["layer1.0.conv1"]["output"]
    assert (out["min"], out["avg_min"]) == (0.0, 0.0)
    assert float(conv.output_scale) == pytest.approx(63 / out["avg_max"], rel=1e-6)
    assert "layer1.0.bn1" not in q.model_activation_stats

    # the overrides
    assert modules["conv1"].output_settings.num_bits == 8 and modules["conv1"].weight_settings.num_bits == 8
    adds = [n for n, m in modules.items() if isinstance(m, RangeLinearQuantEltwiseAddWrapper)]
    assert len(adds) == 8
    assert all(modules[n].output_settings.num_bits == 8 for n in adds)
    fc = modules["fc"]
    assert (fc.output_settings.num_bits, fc.weight_settings.num_bits) == (8, 8)
    assert fc.output_settings.clip_mode == ClipMode.NONE
    fc_stats = q.model_activation_stats["fc"]["output"]  # NONE: the full [min, max] of the file
    assert float(fc.output_scale) == pytest.approx(255 / (fc_stats["max"] - fc_stats["min"]), rel=1e-6)
    # a 6-bit ReLU after an 8-bit add is not fused into it (different bits)
    assert isinstance(modules["layer1.0.relu2"], RangeLinearFakeQuantWrapper)
    with torch.no_grad():  # the quantized model runs (a smaller image keeps the test quick)
        assert prepared(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize(
    ("overrides", "expected_fc", "expected_add"),
    [
        pytest.param(
            {"fc": {"clip_acts": "NONE"}}, ({"clip_acts": "NONE"}, QBits(6, 6, 32)), QBits(6, None, None), id="run3"
        ),
        pytest.param(
            {".*add": {"bits_weights": 8, "bits_activations": 8}, "fc": {"clip_acts": "NONE"}},
            ({"clip_acts": "NONE"}, QBits(6, 6, 32)),
            QBits(8, None, None),
            id="run4",
        ),
        pytest.param(
            {
                "conv1": {"bits_weights": 8, "bits_activations": 8},
                "fc": {"bits_weights": 8, "bits_activations": 8, "clip_acts": "NONE"},
            },
            ({"bits_weights": 8, "bits_activations": 8, "clip_acts": "NONE"}, QBits(8, 8, 32)),
            QBits(6, None, None),
            id="run5",
        ),
    ],
)
def test_original_sample_config_other_runs_resolve_per_module(overrides, expected_fc, expected_add):
    cfg = quantizer_config_from_file(require(SAMPLE_CONFIG))
    model = create_model("resnet18")
    q = PostTrainLinearQuantizer(model, **cfg, overrides=overrides)
    assert (q.module_overrides("fc"), q.module_qbits("fc", model.fc)) == expected_fc
    assert q.module_qbits("layer2.1.add", model.layer2[1].add) == expected_add
    assert q.module_qbits("layer2.1.conv1", model.layer2[1].conv1) == QBits(6, 6, 32)
