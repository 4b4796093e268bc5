"""LSQ (learned step size quantization): levels, step-size gradients and their scale, initialization,
null overrides, optimizer groups, training, schedule-driven preparation."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from distiller.config import dict_config
from distiller.errors import ConfigError
from distiller.quantization import QUANTIZERS, deploy_state_dict, strip_fp_copy
from distiller.quantization.lsq import (
    LSQActivationQuantization,
    LSQQuantizer,
    LSQQuantizeSTE,
    LSQWrapper,
    lsq_grad_scale,
    lsq_init_step,
    lsq_quantize,
    lsq_range,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def registered():
    """``LSQQuantizer`` in the ``QUANTIZERS`` registry (registered here while it is not yet upstream)."""
    added = "LSQQuantizer" not in QUANTIZERS
    if added:
        QUANTIZERS.register("LSQQuantizer", LSQQuantizer)
    yield
    if added:
        QUANTIZERS._entries.pop("LSQQuantizer", None)


class _Net(nn.Module):
    def __init__(self, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = act()
        self.fc = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.fc(x.flatten(1))


def _data(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=g) * 2
    return x, x.flatten(1)[:, :4].argmax(1)


def _prepared(bits_a: int | None = 4, bits_w: int | None = 4, seed: int = 0, lr: float = 0.05, **kwargs):  # noqa: ANN202, ANN003
    torch.manual_seed(seed)
    model = kwargs.pop("model", None) or _Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    quantizer = LSQQuantizer(model, optimizer, bits_activations=bits_a, bits_weights=bits_w, **kwargs)
    quantizer.prepare_model()
    return model, optimizer, quantizer


def _capture(model: nn.Module, types: tuple[type, ...]) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, types):
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.detach()))
    return seen


def _reference_lsq(v: torch.Tensor, s: torch.Tensor, qn: int, qp: int, g: float) -> torch.Tensor:
    """The paper's pseudo-code (Esser et al. 2020, appendix): gradscale, then round_pass."""
    s_scaled = (s - s * g).detach() + s * g
    x = torch.clamp(v / s_scaled, qn, qp)
    return ((x.round() - x).detach() + x) * s_scaled


# --- the quantization function ------------------------------------------------------------------


@pytest.mark.parametrize(("bits", "signed", "expected"), [(2, True, (-2, 1)), (4, True, (-8, 7)), (4, False, (0, 15))])
def test_lsq_range(bits, signed, expected):
    assert lsq_range(bits, signed) == expected


def test_signed_grid_needs_two_bits():
    with pytest.raises(ConfigError, match="at least 2 bits"):
        lsq_range(1, signed=True)
    assert lsq_range(1, signed=False) == (0, 1)


def test_step_gradient_is_scaled_by_one_over_sqrt_n_qp_manual_computation():
    v = torch.tensor([-1.30, -0.20, 0.26, 0.70, 0.95, 2.40], requires_grad=True)
    s = torch.tensor([0.25], requires_grad=True)
    grad_out = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 0.25])
    qn, qp = -4, 3  # 3-bit signed
    g = 1 / math.sqrt(v.numel() * qp)
    assert lsq_grad_scale(v.numel(), qp) == pytest.approx(g)
    out = lsq_quantize(v, s, qn, qp)  # default grad scale: N = elements per step value
    # forward: v/s = -5.2 -0.8 1.04 2.8 3.8 9.6 -> clip, round -> -4 -1 1 3 3 3
    assert torch.allclose(out, torch.tensor([-4.0, -1.0, 1.0, 3.0, 3.0, 3.0]) * 0.25)
    out.backward(grad_out)
    # dv̂/ds: below -> qn, inside -> round(v/s) - v/s, above -> qp
    ds = torch.tensor([-4.0, -1 - (-0.8), 1 - 1.04, 3 - 2.8, 3.0, 3.0])
    assert s.grad.item() == pytest.approx(float((grad_out * ds).sum()) * g, rel=1e-5)
    assert torch.equal(v.grad, grad_out * torch.tensor([0.0, 1, 1, 1, 0, 0]))


def test_step_gradient_matches_the_papers_reference_per_tensor_and_per_channel():
    g_ = torch.Generator().manual_seed(0)
    v = torch.randn(3, 5, 2, generator=g_)
    grad_out = torch.randn(3, 5, 2, generator=g_)
    for step in (torch.tensor([0.3]), torch.tensor([0.2, 0.5, 0.9]).reshape(3, 1, 1)):
        qn, qp = -8, 7
        g = lsq_grad_scale(v.numel() // step.numel(), qp)
        a, sa = v.clone().requires_grad_(), step.clone().requires_grad_()
        b, sb = v.clone().requires_grad_(), step.clone().requires_grad_()
        out = LSQQuantizeSTE.apply(a, sa, qn, qp, g)
        ref = _reference_lsq(b, sb, qn, qp, g)
        assert torch.allclose(out, ref)
        out.backward(grad_out)
        ref.backward(grad_out)
        assert torch.allclose(a.grad, b.grad)
        assert sa.grad.shape == step.shape
        assert torch.allclose(sa.grad, sb.grad, rtol=1e-5, atol=1e-7)


# --- levels --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_weights_and_activations_take_at_most_2_pow_b_values(bits):
    model, _, quantizer = _prepared(bits, bits)
    acts = _capture(model, (LSQActivationQuantization,))
    x, _ = _data(64)
    model(x)
    qn, qp = lsq_range(bits, signed=True)
    for ptq in quantizer.params_to_quantize:
        w = getattr(ptq.module, ptq.q_attr_name)
        step = getattr(ptq.module, ptq.q_attr_name + "_step").detach()
        assert w.unique().numel() <= 2**bits
        ints = w / step
        assert torch.allclose(ints, ints.round(), atol=1e-4)
        assert ints.min() >= qn - 1e-4 and ints.max() <= qp + 1e-4
    assert set(acts) == {"relu1", "relu2"}
    for name, out in acts.items():
        step = model.get_submodule(name).step.detach()
        assert out.unique().numel() <= 2**bits
        assert out.min() >= 0  # unsigned after the ReLU
        ints = out / step
        assert torch.allclose(ints, ints.round(), atol=1e-4) and ints.max() <= 2**bits - 1 + 1e-4
        assert out.unique().numel() > 2 ** (bits - 1) or bits == 8  # the grid is used, not half of it


def test_per_channel_weights_take_at_most_2_pow_b_values_per_channel():
    model, _, _ = _prepared(4, 3, per_channel_wts=True)
    conv = model.conv2
    assert conv.weight_step.shape == (8, 1, 1, 1)
    assert model.fc.weight_step.shape == (4, 1)
    for c in range(8):
        assert conv.weight[c].unique().numel() <= 8
    assert conv.weight.unique().numel() > 8  # different steps per channel


@pytest.mark.parametrize("act", [nn.Tanh, nn.LeakyReLU])
def test_activations_that_can_be_negative_use_the_signed_grid(act):
    net = _Net(act)
    if act is nn.LeakyReLU:
        net.relu2.negative_slope = 0.5  # negative outputs large enough to reach the negative levels
    model, _, _ = _prepared(3, 4, model=net)
    assert isinstance(model.relu2, LSQWrapper) and isinstance(model.relu2.wrapped_module, act)
    assert model.relu2.act_quant.signed and not model.relu1.signed
    out = _capture(model, (LSQWrapper,))
    model(_data(64)[0])
    q = out["relu2"]
    step = model.relu2.act_quant.step.detach()
    assert q.min() < 0 and q.unique().numel() <= 8
    ints = q / step
    assert torch.allclose(ints, ints.round(), atol=1e-4) and ints.min() >= -4 and ints.max() <= 3


def test_relu6_is_wrapped_on_the_unsigned_grid():
    model, _, _ = _prepared(4, 4, model=_Net(nn.ReLU6))
    assert isinstance(model.relu2, LSQWrapper) and not model.relu2.act_quant.signed


def test_one_bit_weights_and_one_bit_signed_activations_are_rejected():
    with pytest.raises(ConfigError, match="at least 2 bits"):
        LSQQuantizer(_Net(), bits_activations=4, bits_weights=1)
    with pytest.raises(ConfigError, match="overrides.fc.bits_weights"):
        LSQQuantizer(_Net(), bits_activations=4, bits_weights=4, overrides={"fc": {"bits_weights": 1}})
    with pytest.raises(ConfigError, match="signed grid"):
        LSQQuantizer(_Net(nn.Tanh), bits_activations=1, bits_weights=4).prepare_model()
    model, _, _ = _prepared(1, 2)  # 1-bit unsigned activations are fine: {0, s}
    assert model(_data()[0]).isfinite().all()


# --- step sizes: initialization, gradients, optimizer ---------------------------------------------


@pytest.mark.filterwarnings("ignore:LSQQuantizer added learned parameters")
def test_weight_steps_start_at_two_mean_abs_over_sqrt_qp():
    torch.manual_seed(0)
    model = _Net()
    w = model.conv2.weight.detach().clone()
    LSQQuantizer(model, bits_activations=4, bits_weights=4).prepare_model()
    assert model.conv2.weight_step.item() == pytest.approx(2 * w.abs().mean().item() / math.sqrt(7), rel=1e-6)
    torch.manual_seed(0)
    model = _Net()
    LSQQuantizer(model, bits_activations=4, bits_weights=3, per_channel_wts=True).prepare_model()
    expected = 2 * w.abs().flatten(1).mean(1) / math.sqrt(3)
    assert torch.allclose(model.conv2.weight_step.flatten(), expected)
    assert torch.equal(lsq_init_step(torch.zeros(3), 7), torch.ones(1))  # an all-zero tensor: step 1


def test_activation_steps_start_from_the_first_batch_only():
    model, _, _ = _prepared(4, 4)
    assert not model.relu1.initialized
    seen = {}
    model.bn1.register_forward_hook(lambda m, i, o: seen.setdefault("bn1", o.detach()))
    x, _ = _data(32)
    model(x)
    assert bool(model.relu1.initialized)
    expected = 2 * torch.relu(seen["bn1"]).mean() / math.sqrt(15)
    assert model.relu1.step.item() == pytest.approx(expected.item(), rel=1e-5)
    first = model.relu1.step.detach().clone()
    model(x * 5)
    assert torch.equal(model.relu1.step.detach(), first)  # no re-initialization

    # a loaded checkpoint keeps its trained step (no initialization from the next batch)
    other, _, _ = _prepared(4, 4, seed=1)
    other.load_state_dict(model.state_dict())
    other(x * 5)
    assert torch.equal(other.relu1.step.detach(), first)


def test_step_sizes_receive_gradients_and_change_during_sgd():
    model, optimizer, quantizer = _prepared(4, 4)
    steps = quantizer.step_params()
    names = {n for n, p in model.named_parameters() if any(p is s for s in steps)}
    assert names == {
        "conv1.weight_step",
        "conv2.weight_step",
        "fc.weight_step",
        "relu1.step",
        "relu2.step",
    }
    group = optimizer.param_groups[-1]
    assert {id(p) for p in group["params"]} == {id(p) for p in steps}
    assert group["weight_decay"] == 0.0 and optimizer.param_groups[0]["weight_decay"] == 1e-4
    x, y = _data(32)
    model(x)  # initializes the activation steps
    before = [s.detach().clone() for s in steps]
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for s in steps:
            assert s.grad is not None and s.grad.abs().sum() > 0
        optimizer.step()
        quantizer.quantize_params()
    assert all(not torch.equal(b, s.detach()) for b, s in zip(before, steps))


@pytest.mark.filterwarnings("ignore:LSQQuantizer added learned parameters")
def test_weight_step_gradient_in_a_model_is_the_scaled_reference():
    """The gradient reaching ``weight_step`` and ``float_weight`` through the forward pre-hook equals the
    paper's formulation with ``g = 1/sqrt(N_W·Q_P)`` (``N_W`` the layer's weights)."""
    torch.manual_seed(0)
    fc = nn.Linear(6, 3)
    model = nn.Sequential(fc)
    LSQQuantizer(model, bits_activations=None, bits_weights=3).prepare_model()
    x = torch.randn(5, 6)
    grad_out = torch.randn(5, 3)
    model(x).backward(grad_out)
    w = fc.float_weight.detach().clone().requires_grad_()
    s = fc.weight_step.detach().clone().requires_grad_()
    ref = nn.functional.linear(x, _reference_lsq(w, s, -4, 3, 1 / math.sqrt(18 * 3)), fc.bias.detach())
    ref.backward(grad_out)
    assert torch.allclose(fc.weight_step.grad, s.grad, rtol=1e-5)
    assert torch.allclose(fc.float_weight.grad, w.grad)


def test_activation_step_gradient_uses_the_features_of_one_sample():
    act = LSQActivationQuantization(4)
    x = torch.randn(7, 2, 3, generator=torch.Generator().manual_seed(2)) * 3
    act(x)  # initialize
    s = act.step.detach().clone().requires_grad_()
    xr = x.clone().requires_grad_()
    act.step.grad = None
    xa = x.clone().requires_grad_()
    out = act(xa)
    ref = _reference_lsq(xr, s, 0, 15, 1 / math.sqrt(6 * 15))
    assert torch.allclose(out, ref)
    grad_out = torch.randn_like(x)
    out.backward(grad_out)
    ref.backward(grad_out)
    assert torch.allclose(act.step.grad, s.grad, rtol=1e-5)
    assert torch.allclose(xa.grad, xr.grad)
    assert torch.equal(xa.grad == 0, (x <= 0) | (x > 15 * s.detach()))  # the ReLU and the upper clip


# --- overrides, deployment, copies -----------------------------------------------------------------


def test_null_overrides_keep_layers_float():
    overrides = {"conv2": {"bits_weights": None}, "relu2": {"bits_activations": None}, "fc": {"bits_weights": 8}}
    model, _, quantizer = _prepared(4, 4, overrides=overrides)
    assert isinstance(model.relu2, nn.ReLU) and isinstance(model.relu1, LSQActivationQuantization)
    assert isinstance(model.conv2.weight, nn.Parameter)
    assert not hasattr(model.conv2, "float_weight") and not hasattr(model.conv2, "weight_step")
    assert {p.module_name: p.num_bits for p in quantizer.params_to_quantize} == {"conv1": 4, "fc": 8}
    assert model.fc.weight.unique().numel() > 16
    float_model, _, _ = _prepared(None, None)
    assert not any(isinstance(m, (LSQActivationQuantization, LSQWrapper)) for m in float_model.modules())
    assert all(isinstance(p, nn.Parameter) for p in (float_model.conv1.weight, float_model.fc.weight))
    assert not any("step" in n for n, _ in float_model.named_parameters())


def test_bias_quantization_has_its_own_step():
    model, _, quantizer = _prepared(4, 4, bits_bias=8)
    assert hasattr(model.fc, "bias_step") and model.fc.bias_step.shape == (1,)
    assert model.fc.bias.unique().numel() <= 256
    assert any(p is model.fc.bias_step for p in quantizer.step_params())


def test_deployment_and_deep_copies():
    model, _, _ = _prepared(4, 4)
    x, _ = _data(8)
    model.eval()
    model(x)
    expected = model(x)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.conv1.float_weight.mul_(3)
    clone(x)
    assert not torch.equal(clone.conv1.weight, model.conv1.weight)  # the copy quantizes its own weights
    state = deploy_state_dict(model)
    assert "conv1.weight" in state and "conv1.float_weight" not in state and "relu1.step" in state
    stripped = strip_fp_copy(copy.deepcopy(model))
    assert isinstance(stripped.conv1.weight, nn.Parameter) and stripped.conv1.weight.unique().numel() <= 16
    assert torch.allclose(stripped(x), expected)


# --- training ------------------------------------------------------------------------------------


def test_a_tiny_model_trains():
    model, optimizer, quantizer = _prepared(4, 4, lr=0.05)
    x, y = _data(64)
    model.train()
    losses = []
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        quantizer.quantize_params()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < 0.6 * losses[0]


def test_schedule_prepares_lsq_when_the_policy_fires(registered):
    torch.manual_seed(0)
    model = _Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    schedule = {
        "version": 1,
        "quantizers": {
            "lsq": {
                "class": "LSQQuantizer",
                "bits_activations": 4,
                "bits_weights": 4,
                "overrides": {"fc": {"bits_weights": 8, "bits_activations": None}},
            }
        },
        "policies": [{"quantizer": {"instance_name": "lsq"}, "starting_epoch": 1, "ending_epoch": 3}],
    }
    scheduler = dict_config(model, optimizer, schedule)
    x, y = _data(16)
    for epoch in range(2):
        scheduler.on_epoch_begin(epoch, optimizer)
        scheduler.on_minibatch_begin(epoch, 0, 1, optimizer)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.on_minibatch_end(epoch, 0, 1, optimizer)
        scheduler.on_epoch_end(epoch, optimizer)
        assert isinstance(model.relu1, LSQActivationQuantization) == (epoch == 1)
    assert len(optimizer.param_groups) == 2 and optimizer.param_groups[1]["weight_decay"] == 0.0
    assert model.fc.weight.unique().numel() <= 256
