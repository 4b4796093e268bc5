"""QAT-trained models → the post-training quantizer's representation → int8 ONNX (issue 7, "Deployment").

:func:`convert_qat_to_ptq` must give a static post-training-quantized model that computes what the QAT
model computes in evaluation mode, on the QAT model's own grids. Three things are *not* the QAT model's
and are the deployment's doing: the model input becomes 8-bit, the logits become 8-bit, and biases
become ``int32`` at the accumulator's scale ``s_in·s_w``. So:

* with bias-free layers, the QAT model fed the deployed model's 8-bit input computes exactly the
  deployed model's activations at every quantized layer, and its logits put on the deployed 8-bit
  output grid are the deployed logits (the exact test below: it checks every grid);
* with biases, the bias rounding (at most ``0.5/(s_in·s_w)``) moves a pre-activation across a rounding
  boundary of a ``k``-bit grid for a few elements: those differ by exactly one step, which can move later
  activations by one step too. Measured on the digits nets: 0.02-0.6 % of the elements of a layer. The
  bound asserted: at most 2 % of a layer's elements, each by at most one step.

The digits data set is embedded (no folder); the MNIST test reads ``../shared/data/mnist``.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distiller.data import load_data
from distiller.errors import QuantizationError
from distiller.models import create_model
from distiller.quantization import (
    DorefaQuantizer,
    PACTQuantizer,
    QuantAwareTrainRangeLinearQuantizer,
    WRPNQuantizer,
    export_onnx,
)
from distiller.quantization.clipped_linear import (
    ClippedLinearQuantization,
    LearnedClippedLinearQuantization,
    dorefa_quantize_param,
    wrpn_quantize_param,
)
from distiller.quantization.linear import linear_dequantize, quantized_range_of
from distiller.quantization.lsq import LSQQuantizer
from distiller.quantization.modes import LinearQuantMode
from distiller.quantization.qat_export import (
    ActivationGrid,
    activation_grid,
    convert_qat_to_ptq,
    dorefa_weight_grid,
    fold_weight_grid,
    lsq_weight_grid,
    range_linear_weight_grid,
    wrpn_weight_grid,
)
from distiller.quantization.quantizer import ParamToQuant, has_fp_copy
from distiller.quantization.settings import QuantSettings, params_from_stats
from distiller.quantization.wrappers import RangeLinearFakeQuantWrapper, RangeLinearQuantParamLayerWrapper
from distiller.quantization.wrappers.base import quantize_as_onnx
from distiller.quantization.wrappers.param_layers import quantize_weights
from shared_data import MNIST_DIR, require

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
numpy_helper = pytest.importorskip("onnx.numpy_helper")

SYM_RESTR = LinearQuantMode.SYMMETRIC_RESTRICTED
ASYM_U = LinearQuantMode.ASYMMETRIC_UNSIGNED


# ---------------------------------------------------------------------------------------------
# models, data, training
# ---------------------------------------------------------------------------------------------


class _TinyNet(nn.Module):
    """conv-relu-maxpool-conv-relu-fc on 8x8 digits, no batch norm."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=bias)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=bias)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(16 * 4 * 4, 10, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.relu2(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


class _BranchNet(nn.Module):
    """conv1's output feeds a PACT ReLU *and* a residual add, so no producer can take the ReLU's grid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)
        y = self.relu2(self.conv2(self.relu1(h)) + h)
        return self.fc(torch.flatten(self.pool(y), 1))


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", batch_size=64, validation_split=0, deterministic=True, seed=0)


@pytest.fixture(scope="module")
def test_split(digits) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*list(digits.test))
    return torch.cat(xs), torch.cat(ys)


def _train(model: nn.Module, loaders, steps: int, optimizer: torch.optim.Optimizer) -> None:  # noqa: ANN001
    """``steps`` SGD steps over the training split, in the order of epochs 0, 1, ... (independent of other tests)."""
    model.train()
    done, epoch = 0, 0
    while done < steps:
        loaders.set_epoch(epoch)
        for x, y in loaders.train:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
        epoch += 1
    model.eval()


def _sgd(model: nn.Module, lr: float = 0.05) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


@pytest.fixture(scope="module")
def float_models(digits) -> dict[str, nn.Module]:
    """The tiny net and simplenet_digits after a short float training (shared by the QAT runs)."""
    out = {}
    for name, make in (("tiny", _TinyNet), ("simplenet_digits", lambda: create_model("simplenet_digits"))):
        torch.manual_seed(0)
        model = make()
        _train(model, digits, 30, _sgd(model))
        out[name] = model
    return out


def _pact(model: nn.Module, opt, scale_weights: bool, **kw) -> PACTQuantizer:  # noqa: ANN001, ANN003
    return PACTQuantizer(
        model, opt, bits_activations=4, bits_weights=4, act_clip_init_val=4.0, scale_weights=scale_weights, **kw
    )


def _dorefa(model: nn.Module, opt, scale_weights: bool, **kw) -> DorefaQuantizer:  # noqa: ANN001, ANN003
    return DorefaQuantizer(model, opt, bits_activations=8, bits_weights=4, scale_weights=scale_weights, **kw)


QUANTIZERS: dict[str, Callable[..., object]] = {"pact_a4w4": _pact, "dorefa_a8w4": _dorefa}


class _Run:
    """A QAT-trained model, its quantizer and its conversion, with outputs on the digits test split."""

    def __init__(self, model, quantizer, converted, qat_out, ptq_out) -> None:  # noqa: ANN001
        self.model, self.quantizer, self.converted = model, quantizer, converted
        self.qat_out, self.ptq_out = qat_out, ptq_out


def _qat_run(float_model: nn.Module, make_quantizer, digits, test_x, steps: int = 30, **kw) -> _Run:  # noqa: ANN001, ANN003
    torch.manual_seed(1)
    model = copy.deepcopy(float_model)
    opt = _sgd(model, 0.02)
    quantizer = make_quantizer(model, opt, **kw)
    quantizer.prepare_model()
    _train(model, digits, steps, opt)
    converted = convert_qat_to_ptq(model, quantizer, test_x[:1], digits.calibration_loader(512))
    with torch.no_grad():
        return _Run(model, quantizer, converted, model(test_x), converted(test_x))


@pytest.fixture(scope="module")
def runs(float_models, digits, test_split) -> dict[str, _Run]:
    out = {}
    for net, float_model in float_models.items():
        for qname, make in QUANTIZERS.items():
            out[f"{net}-{qname}"] = _qat_run(float_model, make, digits, test_split[0], scale_weights=net == "tiny")
    return out


RUN_IDS = [f"{net}-{q}" for net in ("tiny", "simplenet_digits") for q in QUANTIZERS]


# ---------------------------------------------------------------------------------------------
# helpers: the deployment's input quantization, activations of both models, ONNX
# ---------------------------------------------------------------------------------------------


def _input_quantizer(converted: nn.Module, first_layer: str = "conv1") -> Callable[[torch.Tensor], torch.Tensor]:
    """What the deployed model does to its input (the first layer's 8-bit input quantization)."""
    layer = converted.get_submodule(first_layer)
    scale, zp = layer.in0_scale, layer.in0_zero_point
    low, high = layer.input_settings[0].q_range
    return lambda x: linear_dequantize(quantize_as_onnx(x, scale, zp, low, high), scale, zp)


def _output_quantizer(converted: nn.Module, last_layer: str = "fc") -> Callable[[torch.Tensor], torch.Tensor]:
    layer = converted.get_submodule(last_layer)
    scale, zp = layer.output_scale, layer.output_zero_point
    low, high = layer.output_settings.q_range
    return lambda x: linear_dequantize(quantize_as_onnx(x, scale, zp, low, high), scale, zp)


def _activations(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of the named modules (in the converted model a fused ReLU is an Identity: its producer's output)."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.detach().clone()))
        for n in names
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


_LAYER_ACTS = {"conv1": "relu1", "conv2": "relu2", "fc": None}  # each layer's PACT/DoReFa ReLU (fc: none)


def _compare_layers(run: _Run, x: torch.Tensor) -> dict[str, tuple[float, float, float]]:
    """Per layer, fed the QAT model's own input of that layer: (fraction of the outputs that differ,
    largest difference in output steps, the layer's requantization multiplier ``s_out/(s_in·s_w)``).

    The QAT model runs on the deployed model's 8-bit input; its logits are put on the deployed output grid.
    """
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        run.model.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: inputs.__setitem__(n, a[0].clone()))
        for n in _LAYER_ACTS
    ]
    acts = [n for n in _LAYER_ACTS.values() if n is not None]
    qat = _activations(run.model, [*acts, "fc"], _input_quantizer(run.converted)(x))
    for h in handles:
        h.remove()
    qat["fc"] = _output_quantizer(run.converted)(qat["fc"])
    out = {}
    for layer, act in _LAYER_ACTS.items():
        wrapper = run.converted.get_submodule(layer)
        with torch.no_grad():
            got = wrapper(inputs[layer])
        steps = (got - qat[act or layer]).abs() * wrapper.output_scale
        multiplier = float((wrapper.output_scale / (wrapper.in0_scale * wrapper.w_scale)).max())
        out[layer] = (float((steps > 1e-3).float().mean()), float(steps.max()), multiplier)
    return out


def _run_ort(path, x: torch.Tensor) -> np.ndarray:  # noqa: ANN001
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _graph_tensors(model) -> list[np.ndarray]:  # noqa: ANN001
    tensors = [numpy_helper.to_array(t) for t in model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == "Constant":
            tensors += [numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"]
    return tensors


def _int8_weights(path) -> int:  # noqa: ANN001
    return sum(1 for t in _graph_tensors(onnx.load(str(path))) if t.dtype == np.int8 and t.ndim >= 2)


def _accuracy(logits, labels: torch.Tensor) -> float:  # noqa: ANN001
    return 100.0 * float((torch.as_tensor(np.asarray(logits)).argmax(1) == labels).float().mean())


# ---------------------------------------------------------------------------------------------
# the grids (pure functions)
# ---------------------------------------------------------------------------------------------


def _meta(bits: int) -> ParamToQuant:
    return ParamToQuant(nn.Identity(), "layer", "float_weight", "weight", bits)


def _ptq_requantized(weight: torch.Tensor, bits: int, mode: LinearQuantMode) -> torch.Tensor:
    """The integer codes the post-training quantizer computes for ``weight`` from its range."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data = weight.clone()
    quantize_weights(layer, QuantSettings(bits, mode))
    return layer.weight.detach()


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("scale_weights", [False, True])
def test_dorefa_grid_holds_every_level_and_pruned_zeros_exactly(bits, scale_weights):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(16, 40, generator=g) * 0.3
    w[w.abs() < 0.05] = 0.0  # pruned
    wq = dorefa_quantize_param(w, _meta(bits), scale_weights=scale_weights, keep_zeros=True)
    grid = dorefa_weight_grid(wq, bits)
    n = 1 if bits == 1 else 2**bits - 1
    assert (grid.num_bits, grid.mode, grid.per_channel) == (bits + 1, SYM_RESTR, False)
    assert grid.residual(wq) < 1e-4  # every level is a grid point
    assert torch.allclose(grid.dequantize(), wq, rtol=0, atol=1e-6)
    codes = grid.codes[w != 0]
    assert torch.all(codes.remainder(2) == 1) and int(codes.abs().max()) == n  # the odd codes 2i − n
    assert torch.all(grid.codes[w == 0] == 0)
    assert grid.codes.unique().numel() <= 2**bits + 1
    # the post-training quantizer's own (k+1)-bit restricted re-quantization from the range gives the same codes
    assert torch.equal(_ptq_requantized(wq, bits + 1, SYM_RESTR), grid.codes)


def test_dorefa_8_bit_grid_needs_9_bits():
    wq = dorefa_quantize_param(torch.randn(8, 8), _meta(8))
    grid = dorefa_weight_grid(wq, 8)
    assert grid.num_bits == 9 and not grid.fits_int8
    assert grid.residual(wq) < 1e-4


def test_wrpn_grid_is_exact_even_when_the_extremes_are_not_reached():
    w = torch.randn(6, 30, generator=torch.Generator().manual_seed(0)) * 0.2  # |w| < 1: ±1 never reached
    wq = wrpn_quantize_param(w, _meta(4))
    grid = wrpn_weight_grid(wq, 4)
    assert (grid.num_bits, grid.mode, float(grid.scale)) == (4, SYM_RESTR, 7.0)
    assert grid.residual(wq) < 1e-4 and torch.allclose(grid.dequantize(), wq, atol=1e-7)
    # re-quantizing from the tensor's range would not be: its scale is 7 / max|w|, not 7
    assert not torch.equal(_ptq_requantized(wq, 4, SYM_RESTR), grid.codes)


@pytest.mark.parametrize("mode", list(LinearQuantMode))
@pytest.mark.parametrize("per_channel", [False, True])
def test_range_linear_grid_comes_from_the_layer_buffers(mode, per_channel):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU())
    q = QuantAwareTrainRangeLinearQuantizer(
        model, bits_activations=4, bits_weights=4, bits_bias=None, mode=mode, per_channel_wts=per_channel
    )
    q.prepare_model()
    conv = model[0]
    grid = range_linear_weight_grid(conv.weight, conv.weight_scale, conv.weight_zero_point, 4, mode)
    assert grid.per_channel == per_channel and grid.mode == mode
    low, high = quantized_range_of(4, mode)
    assert float(grid.codes.min()) >= low and float(grid.codes.max()) <= high
    assert grid.residual(conv.weight) < 1e-3
    assert torch.allclose(grid.dequantize(), conv.weight, atol=1e-6)


@pytest.mark.parametrize("per_channel", [False, True])
def test_lsq_grid_is_the_step_size(per_channel):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 6), nn.ReLU())
    q = LSQQuantizer(model, _sgd(model), bits_activations=4, bits_weights=3, per_channel_wts=per_channel)
    q.prepare_model()
    layer = model[0]
    grid = lsq_weight_grid(layer.weight, layer.weight_step, 3)
    assert grid.per_channel == per_channel and grid.num_bits == 3
    assert torch.allclose(grid.scale, (1 / layer.weight_step).reshape(grid.scale.shape))
    assert grid.residual(layer.weight) < 1e-3
    assert float(grid.codes.min()) >= -4 and float(grid.codes.max()) <= 3


@pytest.mark.parametrize("kind", ["dorefa", "range_linear_asym"])
def test_folded_grid_follows_the_batch_norm_scale_including_negative_and_zero_gamma(kind):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(5, 3, 3, 3, generator=g) * 0.3
    if kind == "dorefa":
        wq = dorefa_quantize_param(w, _meta(4))
        grid = dorefa_weight_grid(wq, 4)
    else:
        scale = 15 / (w.max() - w.min())
        zp = torch.round(scale * w.min())
        codes = torch.clamp(torch.round(scale * w - zp), 0, 15)
        wq = (codes + zp) / scale
        grid = range_linear_weight_grid(wq, scale, zp, 4, ASYM_U)
    factor = torch.tensor([0.5, -2.0, 0.0, 3.0, -0.1])
    folded = wq * factor.reshape(-1, 1, 1, 1)
    fgrid = fold_weight_grid(grid, folded)
    assert fgrid.per_channel and fgrid.scale.shape == (5,) and bool((fgrid.scale > 0).all())
    assert fgrid.residual(folded) < 1e-3
    assert torch.allclose(fgrid.dequantize(), folded, atol=1e-6)
    low, high = quantized_range_of(fgrid.num_bits, fgrid.mode)
    assert float(fgrid.codes.min()) >= low and float(fgrid.codes.max()) <= high


def _ptq_fake_quantize(grid: ActivationGrid, x: torch.Tensor) -> torch.Tensor:
    """The post-training quantizer's quantization of ``x`` with statistics ``grid.stats()``."""
    settings = QuantSettings(grid.num_bits, grid.mode)
    scale, zp = params_from_stats(settings, grid.stats())
    low, high = settings.q_range
    return linear_dequantize(quantize_as_onnx(x, scale, zp, low, high), scale, zp)


def _range_linear_act(mode: str) -> nn.Module:
    from distiller.quantization.range_linear_qat import FakeQuantizationWrapper

    module = FakeQuantizationWrapper(nn.ReLU() if mode != "tanh" else nn.Tanh(), 4, "SYMMETRIC", 0.9, mode != "tanh")
    module.train()
    module(torch.randn(64, 10) * 3)
    return module.eval()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: LearnedClippedLinearQuantization(4, 3.7), id="pact"),
        pytest.param(lambda: ClippedLinearQuantization(3, 1.0), id="dorefa"),
        pytest.param(lambda: _range_linear_act("relu"), id="range_linear_relu"),
        pytest.param(lambda: _range_linear_act("tanh"), id="range_linear_tanh"),
    ],
)
def test_activation_grids_quantize_like_the_qat_modules(make):
    module = make()
    grid = activation_grid(module)
    x = torch.randn(4000, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        qat = module(x)
    if isinstance(module, (LearnedClippedLinearQuantization, ClippedLinearQuantization)):
        x = torch.relu(x)  # the float module of a replaced ReLU
    elif hasattr(module, "wrapped_module"):
        x = module.wrapped_module(x)
    scale, zp = params_from_stats(QuantSettings(grid.num_bits, grid.mode), grid.stats())
    diff = (_ptq_fake_quantize(grid, x) - qat).abs() * scale
    # ties (x·scale − zp half way between two integers: in a full symmetric grid every clipped value is
    # one) round by multiplying in QAT, by dividing by ONNX's scale here: they may differ by one step
    t = (torch.clamp(x, grid.low, grid.high) * scale - zp).abs()
    ties = (t - t.floor() - 0.5).abs() < 1e-4
    assert float(diff[~ties].max()) <= 1e-4  # the same grid, the same rounding
    assert float(diff.max()) <= 1 + 1e-4


# ---------------------------------------------------------------------------------------------
# whole models on the digits data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_conversion_keeps_the_qat_weights_and_grids(runs, run_id):
    run = runs[run_id]
    report = run.converted.qat_conversion
    print(report.summary())
    assert set(report.weights) == {"conv1", "conv2", "fc"}
    for name, w in report.weights.items():
        assert w.pinned and w.num_bits == 5 and w.mode == "SYMMETRIC_RESTRICTED", name
        assert w.max_error_steps < 1e-3, name
        assert w.folded == (run_id.startswith("simplenet") and name != "fc")
        wrapper = run.converted.get_submodule(name)
        assert isinstance(wrapper, RangeLinearQuantParamLayerWrapper)
        codes = wrapper.wrapped_module.weight.detach()
        assert torch.equal(codes, codes.round()) and float(codes.abs().max()) <= 15
    bits = 4 if "pact" in run_id else 8
    for name in ("conv1", "conv2"):
        grid = report.activations[name]
        assert (grid.num_bits, grid.mode, grid.low) == (bits, ASYM_U, 0.0)
        assert run.converted.get_submodule(name).output_settings.num_bits == bits
    assert report.calibrated == ["conv1 input 0 (the model input)", "fc output"]
    assert not has_fp_copy(run.converted) and has_fp_copy(run.model)  # the QAT model is not changed


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_converted_outputs_match_the_qat_model(runs, run_id, test_split):
    run = runs[run_id]
    x, _ = test_split
    diff = (run.qat_out - run.ptq_out).abs()
    agree = float((run.qat_out.argmax(1) == run.ptq_out.argmax(1)).float().mean())
    step = 1.0 / float(run.converted.fc.output_scale)
    layers = _compare_layers(run, x)
    print(
        f"{run_id}: max |QAT - converted| {float(diff.max()):.4f} (logit step {step:.4f}), "
        f"mean {float(diff.mean()):.4f}, argmax agreement {100 * agree:.2f}%; per layer on the QAT model's "
        f"own inputs (fraction differing, max steps, requantization multiplier): {layers}"
    )
    assert agree >= 0.99
    for name, (fraction, steps, multiplier) in layers.items():
        # The int32 bias is off by at most half an accumulator unit, i.e. multiplier/2 output steps, so it
        # moves an output across a rounding boundary (by one step) for at most a fraction `multiplier` of
        # the elements (boundary positions spread evenly); twice that plus 0.2 % leaves statistical room.
        assert fraction <= 2 * multiplier + 0.002, name
        assert steps <= 1.0 + 1e-3, name


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_onnx_export_is_int8_and_as_accurate_as_the_simulation(runs, run_id, test_split, tmp_path):
    run = runs[run_id]
    x, y = test_split
    path = export_onnx(run.converted, tmp_path / "qat.onnx", x[:1])
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    tensors = _graph_tensors(graph)
    shapes = (
        [(8, 1, 3, 3), (16, 8, 3, 3), (10, 256)]
        if run_id.startswith("tiny")
        else [(16, 1, 3, 3), (32, 16, 3, 3), (10, 512)]
    )
    int8 = sorted(t.shape for t in tensors if t.dtype == np.int8 and t.ndim >= 2)
    assert int8 == sorted(shapes)  # every weight is int8...
    assert all(float(np.abs(t).max()) <= 15 for t in tensors if t.dtype == np.int8 and t.ndim >= 2)  # ...5-bit codes
    assert not any(t.dtype == np.float32 and t.ndim >= 2 for t in tensors)  # no float weights
    ops = Counter(n.op_type for n in graph.graph.node)
    if "a4" in run_id:
        assert ops["Clip"] >= 2  # 4-bit activations inside uint8
    else:
        assert ops["Clip"] == 0  # 8-bit activations fill uint8
    out = _run_ort(path, x)
    step = 1.0 / float(run.converted.fc.output_scale)
    assert float(np.abs(out - run.ptq_out.numpy()).max()) <= step + 1e-5
    qat_acc, ptq_acc, ort_acc = _accuracy(run.qat_out, y), _accuracy(run.ptq_out, y), _accuracy(out, y)
    print(f"{run_id}: test top-1 QAT {qat_acc:.2f}, converted {ptq_acc:.2f}, ONNX Runtime {ort_acc:.2f}")
    assert abs(ort_acc - ptq_acc) <= 0.1  # ONNX Runtime computes what the converted model simulates
    # and that is the QAT model up to its 8-bit input and int32 biases: on 360 images, at most one may flip
    assert abs(ort_acc - qat_acc) <= 100 / len(y) + 1e-3


# ---------------------------------------------------------------------------------------------
# the exact test: without biases nothing but the 8-bit input and logits differs
# ---------------------------------------------------------------------------------------------


def _range_linear(model, opt, **kw):  # noqa: ANN001, ANN003, ANN202
    return QuantAwareTrainRangeLinearQuantizer(model, opt, bits_activations=4, bits_weights=4, ema_decay=0.9, **kw)


EXACT = {
    "pact": lambda m, o: _pact(m, o, True),
    "dorefa": lambda m, o: _dorefa(m, o, True),
    "wrpn": lambda m, o: WRPNQuantizer(m, o, bits_activations=4, bits_weights=4),
    "range_linear_sym": lambda m, o: _range_linear(m, o, mode="SYMMETRIC"),
    "range_linear_asym_per_channel": lambda m, o: _range_linear(m, o, mode="ASYMMETRIC_UNSIGNED", per_channel_wts=True),
    "range_linear_asym_s": lambda m, o: _range_linear(m, o, mode="ASYMMETRIC_SIGNED"),
    "lsq": lambda m, o: LSQQuantizer(m, o, bits_activations=4, bits_weights=4),
}


@pytest.mark.parametrize("kind", list(EXACT))
def test_bias_free_conversion_is_exact(kind, digits, test_split):
    x, _ = test_split
    torch.manual_seed(0)
    model = _TinyNet(bias=False)
    _train(model, digits, 10, _sgd(model))
    opt = _sgd(model, 0.02)
    quantizer = EXACT[kind](model, opt)
    quantizer.prepare_model()
    _train(model, digits, 10, opt)
    converted = convert_qat_to_ptq(model, quantizer, x[:1], digits.calibration_loader(512))
    qin, qout = _input_quantizer(converted), _output_quantizer(converted)
    names = ["relu1", "pool", "relu2"]
    qat = _activations(model, names, qin(x))
    ptq = _activations(converted, names, x)
    for name in names:  # relu1/relu2 of the converted model are fused Identities: their producers' outputs
        grid = converted.qat_conversion.activations[name]
        steps = (qat[name] - ptq[name]).abs() * (2**grid.num_bits - 1) / (grid.high - grid.low)
        differ = float((steps > 1e-3).float().mean())
        print(f"{kind} {name}: {differ:.2e} of the elements differ, by at most {float(steps.max()):.3f} steps")
        assert differ <= 1e-3 and float(steps.max()) <= 1 + 1e-3, name  # float32 rounding near boundaries only
    with torch.no_grad():
        expected, got = qout(model(qin(x))), converted(x)
    steps = (expected - got).abs() * float(converted.fc.output_scale)
    differ = float((steps > 1e-3).float().mean())
    print(f"{kind} logits: {differ:.2e} differ, by at most {float(steps.max()):.3f} steps")
    assert differ <= 0.01 and float(steps.max()) <= 1 + 1e-3  # float32 sums of 256 products near a boundary
    report = converted.qat_conversion
    assert all(w.pinned and w.max_error_steps < 1e-3 for w in report.weights.values())
    if kind.startswith("range_linear"):
        assert report.input_grid is not None and report.input_grid.num_bits == 4
        assert report.calibrated == ["fc output"]  # the input's grid comes from QAT's EMA
    if kind in ("pact", "dorefa"):
        assert all(w.requantized_exactly for w in report.weights.values())


# ---------------------------------------------------------------------------------------------
# special cases
# ---------------------------------------------------------------------------------------------


def test_layers_kept_float_by_null_overrides_stay_float(float_models, digits, test_split, tmp_path):
    x, y = test_split
    run = _qat_run(
        float_models["tiny"],
        _pact,
        digits,
        x,
        scale_weights=True,
        overrides={"conv1": {"bits_weights": None}, "fc": {"bits_weights": None}},
    )
    report = run.converted.qat_conversion
    assert set(report.weights) == {"conv2"}
    assert report.float_layers == ["fc"]  # float weights and a float output: a float layer
    assert isinstance(run.converted.fc, nn.Linear)
    assert isinstance(run.converted.conv1, RangeLinearFakeQuantWrapper)  # float weights, 4-bit output (PACT)
    assert torch.equal(run.converted.conv1.wrapped_module.weight, run.model.conv1.weight)
    assert float((run.qat_out.argmax(1) == run.ptq_out.argmax(1)).float().mean()) >= 0.99
    path = export_onnx(run.converted, tmp_path / "mixed.onnx", x[:1])
    tensors = _graph_tensors(onnx.load(str(path)))
    assert [t.shape for t in tensors if t.dtype == np.int8 and t.ndim >= 2] == [(16, 8, 3, 3)]
    assert sorted(t.shape for t in tensors if t.dtype == np.float32 and t.ndim >= 2) == [(8, 1, 3, 3), (10, 256)]
    # ONNX Runtime (1.32) quantizes the float weights of a Conv between DequantizeLinear and QuantizeLinear
    # itself (its WeightBiasQuantization transformer), which is not what the model says: without it the
    # runtime computes the simulation
    session = ort.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], disabled_optimizers=["WeightBiasQuantization"]
    )
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert float(np.abs(out - run.ptq_out.numpy()).max()) <= 1e-4
    assert abs(_accuracy(out, y) - _accuracy(run.ptq_out, y)) <= 0.1


def test_a_relu_whose_producer_feeds_another_branch_keeps_its_grid(digits, test_split, tmp_path):
    x, y = test_split
    torch.manual_seed(0)
    model = _BranchNet()
    _train(model, digits, 30, _sgd(model))
    run = _qat_run(model, _pact, digits, x, scale_weights=True)
    report = run.converted.qat_conversion
    assert "conv1" not in report.activations  # conv1's output also feeds the add: 8-bit, calibrated
    assert isinstance(run.converted.relu1, RangeLinearFakeQuantWrapper)
    assert isinstance(run.converted.relu1.wrapped_module, nn.Hardtanh)  # a ReLU would keep conv1's 8-bit grid
    grid = report.activations["relu1"]
    acts = _activations(run.converted, ["relu1"], x)["relu1"]
    assert acts.unique().numel() <= 16 and float(acts.max()) <= grid.high + 1e-6  # on PACT's 4-bit grid
    assert report.activations["add"].num_bits == 4  # relu2's grid went to the add, which PTQ fuses with it
    assert float((run.qat_out.argmax(1) == run.ptq_out.argmax(1)).float().mean()) >= 0.99
    path = export_onnx(run.converted, tmp_path / "branch.onnx", x[:1])
    assert abs(_accuracy(_run_ort(path, x), y) - _accuracy(run.ptq_out, y)) <= 0.1


class _SharedReluNet(nn.Module):
    """One ReLU module called twice (as torchvision's BasicBlock does): PACT gives both calls one α."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.relu(self.conv2(self.relu(self.conv1(x)))), 1))


def test_a_quantizer_called_twice_gives_both_calls_its_grid(digits, test_split):
    x, _ = test_split
    torch.manual_seed(0)
    model = _SharedReluNet()
    _train(model, digits, 30, _sgd(model))
    run = _qat_run(model, _pact, digits, x, scale_weights=True)
    report = run.converted.qat_conversion
    alpha = float(run.model.relu.clip_val.detach())
    for name in ("conv1", "conv2"):  # the producers of relu and relu#1
        assert report.activations[name] == ActivationGrid(4, ASYM_U, 0.0, pytest.approx(alpha))
    assert float((run.qat_out.argmax(1) == run.ptq_out.argmax(1)).float().mean()) >= 0.99


def test_dorefa_8_bit_weights_are_re_quantized_with_a_warning(float_models, digits, test_split):
    x, _ = test_split
    torch.manual_seed(0)
    model = copy.deepcopy(float_models["tiny"])
    quantizer = DorefaQuantizer(model, None, bits_activations=8, bits_weights=8, scale_weights=True)
    quantizer.prepare_model()
    with pytest.warns(UserWarning, match="need 9-bit codes"):
        converted = convert_qat_to_ptq(model, quantizer, x[:1], digits.calibration_loader(256))
    for w in converted.qat_conversion.weights.values():
        assert not w.pinned and w.num_bits == 8 and 0.05 < w.max_error_steps <= 0.5 + 1e-6
    with torch.no_grad():
        assert float((model(x).argmax(1) == converted(x).argmax(1)).float().mean()) >= 0.99


def test_calibration_is_needed_for_the_tensors_qat_kept_float(float_models, test_split):
    model = copy.deepcopy(float_models["tiny"])
    quantizer = _pact(model, None, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no optimizer for α
        quantizer.prepare_model()
    with pytest.raises(QuantizationError, match=r"calibration_loader.*|conv1 input 0.*fc output"):
        convert_qat_to_ptq(model, quantizer, test_split[0][:1])


def test_unknown_quantizer_is_rejected(float_models, test_split):
    from distiller.quantization.quantizer import Quantizer

    model = copy.deepcopy(float_models["tiny"])
    with pytest.raises(QuantizationError, match="does not know"):
        convert_qat_to_ptq(model, Quantizer(model, bits_weights=8), test_split[0][:1])
    with pytest.raises(QuantizationError, match="has not prepared"):
        convert_qat_to_ptq(model, _pact(model, None, True), test_split[0][:1])


# ---------------------------------------------------------------------------------------------
# real data: simplenet_mnist, PACT a4/w4, MNIST
# ---------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_simplenet_mnist_pact_onnx_runtime_accuracy_equals_the_qat_simulation(tmp_path):
    """One epoch of PACT a4/w4 on 30,000 MNIST training images (about 20 s on two cores), then the
    10,000 test images through the QAT model, the converted model and ONNX Runtime."""
    data = require(MNIST_DIR)
    torch.manual_seed(0)
    loaders = load_data(
        "mnist", data, batch_size=128, validation_split=0, effective_train_size=30000, deterministic=True
    )
    model = create_model("simplenet_mnist")
    opt = _sgd(model, 0.05)
    quantizer = PACTQuantizer(model, opt, bits_activations=4, bits_weights=4, act_clip_init_val=6.0, scale_weights=True)
    quantizer.prepare_model()
    _train(model, loaders, len(loaders.train), opt)
    xs, ys = zip(*list(loaders.test))
    x, y = torch.cat(xs), torch.cat(ys)
    converted = convert_qat_to_ptq(model, quantizer, x[:1], loaders.calibration_loader(2048))
    with torch.no_grad():
        qat_out = torch.cat([model(x[i : i + 1000]) for i in range(0, len(x), 1000)])
        ptq_out = torch.cat([converted(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    path = export_onnx(converted, tmp_path / "simplenet_mnist_pact.onnx", x[:1])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort_out = np.concatenate(
        [session.run(None, {session.get_inputs()[0].name: x[i : i + 1000].numpy()})[0] for i in range(0, len(x), 1000)]
    )
    qat_acc, ptq_acc, ort_acc = _accuracy(qat_out, y), _accuracy(ptq_out, y), _accuracy(ort_out, y)
    agree = float((qat_out.argmax(1) == ptq_out.argmax(1)).float().mean())
    qat_ptq = float((qat_out - ptq_out).abs().max())
    ort_ptq = float(np.abs(ort_out - ptq_out.numpy()).max())
    print(
        f"simplenet_mnist PACT a4/w4: top-1 QAT {qat_acc:.2f}, converted {ptq_acc:.2f}, ONNX Runtime {ort_acc:.2f}; "
        f"argmax agreement QAT/converted {100 * agree:.2f}%, max |QAT - converted| {qat_ptq:.3f}, "
        f"max |ORT - converted| {ort_ptq:.2e}"
    )
    print(converted.qat_conversion.summary())
    assert _int8_weights(path) == 4
    assert abs(ort_acc - qat_acc) <= 0.1
    assert agree >= 0.99
