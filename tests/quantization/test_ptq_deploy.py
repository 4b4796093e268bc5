"""Deployment of a post-training-quantized model: the ONNX (QDQ) form computes what the simulation does.

The simulation (integer arithmetic on float tensors) and the deployment form (``DequantizeLinear`` ->
float operator -> ``QuantizeLinear`` with the same scales) round at different places, so outputs may
differ by a quantization step of the output; nothing more. ONNX Runtime runs the exported file, and
with graph optimizations fuses the QDQ groups into integer kernels (``QLinearConv``).
"""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from distiller.errors import ExportError
from distiller.quantization import calibrate, deployment_form, export_onnx, is_quantized, quantize

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
numpy_helper = pytest.importorskip("onnx.numpy_helper")


class _ResBlockNet(nn.Module):
    """conv-bn-relu -> maxpool -> [conv-bn-relu-conv-bn + identity] -> relu -> avgpool -> fc (functional ops)."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.conv0, self.bn0 = nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c)
        self.pool0 = nn.MaxPool2d(2)
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool0(torch.relu(self.bn0(self.conv0(x))))
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)) + x)
        return self.fc(torch.flatten(self.pool(y), 1))


def _float_model() -> nn.Module:
    torch.manual_seed(0)
    model = _ResBlockNet().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def _calibration() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(8, 3, 16, 16, generator=g) for _ in range(2)]


def _inputs() -> torch.Tensor:
    # twice the calibration spread: inputs and activations also leave the calibrated ranges (clamping)
    return 2 * torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(2))


EXAMPLE = torch.zeros(1, 3, 16, 16)


@pytest.fixture(scope="module")
def float_model() -> nn.Module:
    return _float_model()


@pytest.fixture(scope="module")
def stats(float_model) -> dict:
    """Calibration statistics, collected once (they do not depend on the quantization settings)."""
    return calibrate(float_model, _calibration(), EXAMPLE)


@pytest.fixture(scope="module")
def quantized_sym(float_model, stats) -> nn.Module:
    return _quantized(float_model, stats)


def _quantized(float_model: nn.Module, stats: dict, **config) -> nn.Module:  # noqa: ANN003
    config["model_activation_stats"] = copy.deepcopy(stats)
    return quantize(float_model, config, example_input=EXAMPLE)


def _steps(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, qm: nn.Module) -> float:
    """Largest difference in units of the output's quantization step (1 / fc.output_scale)."""
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max()
    return float(diff * float(qm.fc.output_scale))


def _simulate(qm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return qm(x)


def _run_ort(path, x: torch.Tensor, options=None) -> np.ndarray:  # noqa: ANN001
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _graph_tensors(model) -> list[np.ndarray]:  # noqa: ANN001
    """Initializers and Constant-node values of an ONNX graph."""
    tensors = [numpy_helper.to_array(t) for t in model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == "Constant":
            tensors += [numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"]
    return tensors


# ---------------------------------------------------------------------------------------------
# deployment_form: eager ONNX form
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"clip_acts": "NONE"}, id="sym"),
        pytest.param({"mode": "ASYMMETRIC_UNSIGNED", "per_channel_wts": True}, id="asym_u-per_channel"),
        pytest.param({"mode": "ASYMMETRIC_SIGNED", "clip_acts": "AVG"}, id="asym_s-avg"),
        pytest.param({"mode": {"activations": "ASYMMETRIC_UNSIGNED", "weights": "SYMMETRIC"}}, id="mixed"),
    ],
)
def test_deployment_form_equals_the_simulation(float_model, stats, config):
    qm = _quantized(float_model, stats, **config)
    x = _inputs()
    sim = _simulate(qm, x)
    with deployment_form(qm) as same:
        assert same is qm
        assert all(m.deploy for m in qm.modules() if hasattr(m, "deploy"))
        deployed = _simulate(qm, x)
    assert not any(m.deploy for m in qm.modules() if hasattr(m, "deploy"))  # restored
    assert _steps(sim, deployed, qm) <= 1.0 + 1e-3
    assert torch.equal(sim.argmax(1), deployed.argmax(1))
    assert torch.equal(_simulate(qm, x), sim)  # the simulation again after the context


def test_is_quantized(float_model, quantized_sym):
    assert not is_quantized(float_model)
    assert is_quantized(quantized_sym)


def test_dynamic_mode_cannot_be_deployed(float_model, tmp_path):
    qm = quantize(float_model, {}, example_input=EXAMPLE)  # no statistics: dynamic
    with pytest.raises(ExportError, match="dynamic-mode"), deployment_form(qm):
        pass
    with pytest.raises(ExportError, match="dynamic-mode"):
        export_onnx(qm, tmp_path / "dynamic.onnx", EXAMPLE)
    assert not (tmp_path / "dynamic.onnx").exists()


def test_quantized_export_needs_opset_13(quantized_sym, tmp_path):
    with pytest.raises(ExportError, match="opset 13"):
        export_onnx(quantized_sym, tmp_path / "q.onnx", EXAMPLE, opset=12)


# ---------------------------------------------------------------------------------------------
# export_onnx and ONNX Runtime
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_sym(quantized_sym, tmp_path_factory):
    path = export_onnx(quantized_sym, tmp_path_factory.mktemp("onnx") / "q8.onnx", EXAMPLE)
    return quantized_sym, path


def test_export_onnx_runs_in_onnxruntime_like_the_simulation(exported_sym):
    qm, path = exported_sym
    x = _inputs()
    sim = _simulate(qm, x)
    out = _run_ort(path, x)
    assert out.shape == (16, 10)
    assert _steps(out, sim, qm) <= 2.0
    assert np.array_equal(out.argmax(1), sim.argmax(1).numpy())


def test_exported_graph_is_qdq_with_int8_weights_and_int32_biases(exported_sym):
    _, path = exported_sym
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] >= 1 and ops["DequantizeLinear"] >= 1
    tensors = _graph_tensors(model)
    int8_shapes = sorted(t.shape for t in tensors if t.dtype == np.int8 and t.ndim >= 2)
    assert int8_shapes == sorted([(8, 3, 3, 3), (8, 8, 3, 3), (8, 8, 3, 3), (10, 8)])  # conv and fc weights
    int32_shapes = sorted(t.shape for t in tensors if t.dtype == np.int32 and t.ndim == 1 and t.size > 1)
    assert (8,) in int32_shapes and (10,) in int32_shapes  # biases at the accumulator scale
    assert any(t.dtype == np.uint8 for t in tensors)  # activation zero points
    assert not any(t.dtype == np.float32 and t.ndim == 4 for t in tensors)  # no float conv weights


def test_onnxruntime_fuses_the_block_into_integer_kernels(exported_sym, tmp_path):
    qm, path = exported_sym
    optimized = tmp_path / "optimized.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimized)
    x = _inputs()
    out = _run_ort(path, x, options)
    ops = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    assert ops["QLinearConv"] == 3
    assert ops["Conv"] == 0 and ops["FusedConv"] == 0
    assert ops["QLinearAdd"] == 1
    assert _steps(out, _simulate(qm, x), qm) <= 2.0


def test_per_channel_asymmetric_export_matches_the_simulation(float_model, stats, tmp_path):
    qm = _quantized(float_model, stats, mode="ASYMMETRIC_UNSIGNED", per_channel_wts=True, clip_acts="AVG")
    path = export_onnx(qm, tmp_path / "pc.onnx", EXAMPLE)
    x = _inputs()
    assert _steps(_run_ort(path, x), _simulate(qm, x), qm) <= 2.0


def test_six_bit_activations_export_inserts_clip_and_matches_the_simulation(float_model, stats, tmp_path):
    # 6-bit activations live on [0, 63] (or [-32, 31]) inside the 8-bit ONNX type: a Clip keeps them there.
    qm = _quantized(float_model, stats, bits_activations=6)
    path = export_onnx(qm, tmp_path / "q6.onnx", EXAMPLE)
    ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["Clip"] >= 1
    x = _inputs()
    sim = _simulate(qm, x)
    out = _run_ort(path, x)
    assert _steps(out, sim, qm) <= 2.0
    assert np.array_equal(out.argmax(1), sim.argmax(1).numpy())
    # without the clip the 8-bit type would let values beyond the 6-bit range through
    assert float(np.abs(out).max()) <= 32 / float(qm.fc.output_scale) + 1e-6
