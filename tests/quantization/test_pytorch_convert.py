"""--qe-convert-pytorch: a calibrated quantized model as PyTorch's native quantized modules."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
from torch import nn

from distiller.errors import ConfigError, QuantizationError
from distiller.quantization import quantize
from distiller.quantization.linear import (
    distiller_qparams_to_pytorch,
    linear_dequantize,
    linear_quantize_clamp,
    quant_params_for_range,
    quantized_range_of,
)
from distiller.quantization.modes import LinearQuantMode
from distiller.quantization.pytorch_convert import (
    QFunctionalAdd,
    QFunctionalCat,
    QFunctionalMul,
    convert_to_pytorch,
    distiller_quantized_tensor_to_pytorch,
)
from distiller.quantization.wrappers import RangeLinearQuantWrapper

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions:UserWarning"),
    pytest.mark.filterwarnings("ignore:convert_to_pytorch:FutureWarning"),
]


@pytest.fixture(autouse=True)
def _restore_engine():
    engine = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = engine


class ConvNet(nn.Module):
    """conv-bn-relu-conv-relu-avgpool-fc, optionally with a residual add around the second conv."""

    def __init__(self, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        y = self.conv2(x)
        y = self.relu2(y + x if self.residual else y)
        return self.fc(torch.flatten(self.pool(y), 1))


class RichNet(nn.Module):
    """Max pooling, a gate (sigmoid, multiply), concat, a float-only layer, LeakyReLU, tanh, a view."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.mp = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.sig = nn.Sigmoid()
        self.conv3 = nn.Conv2d(8, 8, 1)
        self.norm = nn.GroupNorm(2, 16)
        self.lrelu = nn.LeakyReLU(0.1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)
        self.fc2 = nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mp(self.relu1(self.conv1(x)))
        y = self.conv3(x) * self.sig(self.conv2(x))
        z = self.lrelu(self.norm(torch.cat([x, y], 1)))
        z = self.gap(z).view(z.size(0), -1)
        return self.fc2(torch.tanh(self.fc(z)))


def _data(seed: int, batches: int = 8, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 8, 8, generator=g), torch.zeros(size, dtype=torch.long)) for _ in range(batches)]


def _model(cls=ConvNet, **kwargs) -> nn.Module:  # noqa: ANN001
    torch.manual_seed(0)
    model = cls(**kwargs).eval()
    if hasattr(model, "bn1"):  # non-trivial BatchNorm statistics to fold
        model.bn1.running_mean.uniform_(-0.2, 0.2)
        model.bn1.running_var.uniform_(0.5, 2.0)
    return model


def _quantized(config, cls=ConvNet, **kwargs) -> nn.Module:  # noqa: ANN001
    return quantize(_model(cls, **kwargs), config, _data(0))


def _out_step(quantized: nn.Module, name: str = "fc") -> float:
    return 1.0 / float(quantized.get_submodule(name).output_scale)


def _compare(quantized: nn.Module, converted: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        sim, conv = quantized(x), converted(x)
    assert conv.dtype == torch.float32 and not conv.is_quantized and conv.device.type == "cpu"
    agreement = (sim.argmax(1) == conv.argmax(1)).float().mean().item()
    return (sim - conv).abs().max().item(), agreement


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("mode", ["asym_u", "sym"])
def test_converted_matches_simulation(mode, per_channel, residual):
    q = _quantized({"mode": mode, "per_channel_wts": per_channel}, residual=residual)
    c = convert_to_pytorch(q, _data(0)[0][0][:1], backend="fbgemm", reduce_range=False)
    x = torch.cat([b[0] for b in _data(1)])  # fresh random inputs from the calibration distribution
    diff, agreement = _compare(q, c, x)
    # Same grids as the simulation: only rounding order differs (pooling, rescaled adds)
    assert diff <= 3 * _out_step(q) + 1e-6
    assert agreement >= 0.9


@pytest.mark.parametrize("backend", ["fbgemm", "x86"])
@pytest.mark.parametrize("mode", ["asym_u", "sym"])
def test_default_reduce_range_close(mode, backend):
    q = _quantized({"mode": mode, "per_channel_wts": True}, residual=True)
    c = convert_to_pytorch(q, _data(0)[0][0][:1], backend=backend)  # reduce_range: 7-bit activations
    assert c.quantizer_metadata["pytorch_convert_reduce_range"] is True
    x = torch.cat([b[0] for b in _data(0)])  # inside the calibrated ranges (7-bit grids do not clip alike)
    diff, agreement = _compare(q, c, x)
    assert diff <= 8 * _out_step(q)  # half the resolution in every activation
    assert agreement >= 0.9


def test_qnnpack_backend():
    q = _quantized({"mode": "asym_u", "per_channel_wts": False}, residual=True)
    c = convert_to_pytorch(q, _data(0)[0][0][:1], backend="qnnpack")
    assert torch.backends.quantized.engine == "qnnpack"
    assert c.quantizer_metadata["pytorch_convert_backend"] == "qnnpack"
    diff, agreement = _compare(q, c, torch.cat([b[0] for b in _data(1)]))
    assert diff <= 3 * _out_step(q) + 1e-6
    assert agreement >= 0.9


def test_converted_modules():
    q = _quantized({"mode": "asym_u", "per_channel_wts": True}, residual=True)
    c = convert_to_pytorch(q, _data(0)[0][0][:1], reduce_range=False)
    assert not any(isinstance(m, RangeLinearQuantWrapper) for m in c.modules())
    assert isinstance(c.conv1, nniq.ConvReLU2d)  # the ReLU (after the folded BN) fused
    assert isinstance(c.conv2, nnq.Conv2d)  # the ReLU follows the add
    assert c.conv2.weight().qscheme() == torch.per_channel_affine
    assert c.conv2.weight().dtype == torch.qint8
    assert isinstance(c.fc, nnq.Linear)
    adds = [m for m in c.modules() if isinstance(m, QFunctionalAdd)]
    assert len(adds) == 1 and adds[0].relu
    assert isinstance(c.pool, nn.AvgPool2d)  # runs on the quantized tensor
    stubs = [m for m in c.modules() if isinstance(m, nnq.Quantize)]
    assert stubs and isinstance(c.get_submodule("x_quant"), nnq.Quantize)
    assert isinstance(c.get_submodule("output_dequant"), nnq.DeQuantize)
    assert c.quantizer_metadata["pytorch_convert"] is True
    # the simulated model is not touched
    assert isinstance(q.conv1, RangeLinearQuantWrapper)


def test_per_tensor_weights_and_output_params():
    q = _quantized({"mode": "sym", "per_channel_wts": False})
    c = convert_to_pytorch(q, _data(0)[0][0][:1], reduce_range=False)
    assert c.fc.weight().qscheme() == torch.per_tensor_affine
    scale, zp = distiller_qparams_to_pytorch(q.fc.output_scale, q.fc.output_zero_point, 8, "sym", torch.quint8)
    assert c.fc.scale == pytest.approx(float(scale)) and c.fc.zero_point == int(zp) == 128


def test_rich_model():
    q = _quantized(
        {
            "mode": "asym_u",
            "per_channel_wts": True,
            "overrides": {"fc2": {"bits_activations": None, "bits_weights": None}},
        },
        cls=RichNet,
    )
    c = convert_to_pytorch(q, _data(0)[0][0][:1], reduce_range=False)
    kinds = {type(m) for m in c.modules()}
    assert {QFunctionalMul, QFunctionalCat, nnq.Sigmoid, nnq.LeakyReLU, nn.MaxPool2d} <= kinds
    assert isinstance(c.fc2, nn.Linear) and isinstance(c.norm, nn.GroupNorm)  # float, dequantized around
    x = torch.cat([b[0] for b in _data(1)])
    with torch.no_grad():
        diff = (q(x) - c(x)).abs().max().item()
    # fc2 is float: a couple of steps of its quantized input (tanh, step ~0.005) through its weights
    assert diff <= 0.05


class EmbeddingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 4)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.emb(idx))).mean(1)


def test_embedding_model():
    torch.manual_seed(0)
    model = EmbeddingNet().eval()
    g = torch.Generator().manual_seed(0)
    loader = [(torch.randint(0, 20, (16, 5), generator=g), None) for _ in range(3)]
    q = quantize(model, {"mode": "asym_u"}, loader)
    c = convert_to_pytorch(q, loader[0][0][:1], reduce_range=False)
    assert isinstance(c.emb, nn.Embedding) and isinstance(c.fc, nnq.Linear)
    assert not any(isinstance(m, RangeLinearQuantWrapper) for m in c.modules())
    x = torch.cat([b[0] for b in loader])
    with torch.no_grad():
        # the table's integers and the linear layer's grids are PyTorch's: the same values
        assert (q(x) - c(x)).abs().max().item() <= _out_step(q) + 1e-6


def test_state_dict_round_trip():
    q = _quantized({"mode": "asym_u", "per_channel_wts": True}, residual=True)
    dummy = _data(0)[0][0][:1]
    c = convert_to_pytorch(q, dummy)
    again = convert_to_pytorch(_quantized({"mode": "asym_u", "per_channel_wts": True}, residual=True), dummy)
    again.load_state_dict(c.state_dict())
    x = torch.cat([b[0] for b in _data(1)])
    with torch.no_grad():
        assert torch.equal(c(x), again(x))


def test_deprecation_warning():
    q = _quantized({"mode": "asym_u"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        convert_to_pytorch(q, _data(0)[0][0][:1])
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert any("deprecated" in m and "export_onnx" in m and "--export-onnx" in m for m in messages)


def test_dynamic_mode_refused():
    q = quantize(_model(), {"mode": "asym_u"}, example_input=torch.randn(1, 3, 8, 8))
    with pytest.raises(QuantizationError, match="dynamic mode.*calibration"):
        convert_to_pytorch(q, torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize(
    "config, match",
    [({"bits_activations": 4}, "activations: 4 bits"), ({"bits_parameters": 6}, "weights: 6 bits")],
)
def test_non_8_bit_refused(config, match):
    q = _quantized({"mode": "asym_u", **config})
    with pytest.raises(QuantizationError, match=f"{match}.*8-bit only"):
        convert_to_pytorch(q, torch.randn(1, 3, 8, 8))


def test_bad_backend_and_float_model():
    q = _quantized({"mode": "asym_u"})
    with pytest.raises(QuantizationError, match="not supported; choose one of: fbgemm, x86, qnnpack"):
        convert_to_pytorch(q, torch.randn(1, 3, 8, 8), backend="tensorrt")
    with pytest.raises(QuantizationError, match="no quantized layers"):
        convert_to_pytorch(_model(), torch.randn(1, 3, 8, 8))
    with pytest.raises(QuantizationError, match="dummy input"):
        convert_to_pytorch(q, None)


# -- distiller_quantized_tensor_to_pytorch ---------------------------------------------------------
@pytest.mark.parametrize("dest", [torch.quint8, torch.qint8])
@pytest.mark.parametrize("mode", list(LinearQuantMode))
def test_tensor_round_trip_per_tensor(mode, dest):
    x = torch.randn(200, generator=torch.Generator().manual_seed(0)) * 2 + 0.5
    scale, zp = quant_params_for_range(8, mode, x.min(), x.max())
    q = linear_quantize_clamp(x, scale, zp, *quantized_range_of(8, mode))
    t = distiller_quantized_tensor_to_pytorch(q, scale, zp, 8, mode, dest)
    assert t.dtype == dest and t.qscheme() == torch.per_tensor_affine
    assert torch.allclose(t.dequantize(), linear_dequantize(q, scale, zp), atol=1e-5)
    scale_pt, zp_pt = distiller_qparams_to_pytorch(scale, zp, 8, mode, dest)
    ref = torch.quantize_per_tensor(linear_dequantize(q, scale, zp), float(scale_pt), int(zp_pt), dest)
    assert (t.int_repr().long() - ref.int_repr().long()).abs().max() <= 1


@pytest.mark.parametrize("dest", [torch.quint8, torch.qint8])
@pytest.mark.parametrize("mode", list(LinearQuantMode))
def test_tensor_round_trip_per_channel(mode, dest):
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.1, 2, 6).view(
        -1, 1, 1, 1
    )
    flat = w.flatten(1)
    scale, zp = quant_params_for_range(8, mode, flat.min(1).values, flat.max(1).values)
    view = (-1, 1, 1, 1)
    q = linear_quantize_clamp(w, scale.view(view), zp.view(view), *quantized_range_of(8, mode))
    t = distiller_quantized_tensor_to_pytorch(q, scale, zp, 8, mode, dest, per_channel=True, axis=0)
    assert t.qscheme() == torch.per_channel_affine and t.q_per_channel_axis() == 0
    assert torch.allclose(t.dequantize(), linear_dequantize(q, scale.view(view), zp.view(view)), atol=1e-5)
    scale_pt, zp_pt = distiller_qparams_to_pytorch(scale, zp, 8, mode, dest)
    ref = torch.quantize_per_channel(t.dequantize(), scale_pt.double(), zp_pt, 0, dest)
    assert torch.equal(ref.int_repr(), t.int_repr())


def test_tensor_conversion_errors():
    scale, zp = quant_params_for_range(8, "sym", -1.0, 1.0)
    with pytest.raises(QuantizationError, match="not integer-valued"):
        distiller_quantized_tensor_to_pytorch(torch.tensor([0.5]), scale, zp, 8, "sym", torch.qint8)
    with pytest.raises(QuantizationError, match="per_channel=True"):
        distiller_quantized_tensor_to_pytorch(torch.zeros(2, 3), torch.ones(2), torch.zeros(2), 8, "sym", torch.qint8)
    with pytest.raises(QuantizationError, match="outside"):
        distiller_quantized_tensor_to_pytorch(torch.tensor([200.0]), scale, zp, 8, "sym", torch.qint8)
    with pytest.raises(ConfigError):
        distiller_quantized_tensor_to_pytorch(torch.tensor([1.0]), scale, zp, 8, "sym", torch.qint32)
