"""Each QAT quantizer's weights and activations take the documented number of levels; PACT's α
learns; range-linear QAT tracks activation ranges with a bias-corrected EMA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.modules import Concat, EltwiseMult
from distiller.quantization import (
    ClippedLinearQuantization,
    DorefaQuantizer,
    FakeLinearQuantization,
    FakeQuantizationWrapper,
    LearnedClippedLinearQuantization,
    LinearQuantMode,
    NCFQuantAwareTrainQuantizer,
    PACTQuantizer,
    QuantAwareTrainRangeLinearQuantizer,
    WRPNQuantizer,
)
from distiller.quantization.clipped_linear import dorefa_quantize_param, wrpn_quantize_param
from distiller.quantization.quantizer import ParamToQuant
from distiller.quantization.range_linear_qat import update_ema


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.fc(x.flatten(1))


def _data(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=g) * 2
    return x, (x.flatten(1)[:, :4].argmax(1))


def _meta(bits: int) -> ParamToQuant:
    return ParamToQuant(nn.Identity(), "m", "float_weight", "weight", bits)


def _distinct(t: torch.Tensor) -> int:
    return t.detach().unique().numel()


def _capture_activations(model: nn.Module, types: tuple[type, ...]) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, types):
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.detach()))
    return seen


# --- weights ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_dorefa_weights_take_at_most_2_pow_k_values_in_minus_1_to_1(bits):
    w = torch.randn(64, 32, 3, 3, generator=torch.Generator().manual_seed(bits))
    q = dorefa_quantize_param(w, _meta(bits))
    assert _distinct(q) <= 2**bits
    assert _distinct(q) == 2**bits or bits == 8  # a large tensor uses every level
    assert q.abs().max() == pytest.approx(1.0)
    levels = (q + 1) / 2 * (2**bits - 1)  # back on the integer grid 0 .. 2^k - 1
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    scaled = dorefa_quantize_param(w, _meta(bits), scale_weights=True)
    assert _distinct(scaled) == _distinct(q)
    assert scaled.abs().max() == pytest.approx(torch.tanh(w).abs().max().item())


@pytest.mark.parametrize("bits", [1, 3])
def test_dorefa_keeps_pruned_weights_at_zero_with_a_straight_through_gradient(bits):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(32, 16, generator=g) * (torch.rand(32, 16, generator=g) > 0.5)
    w.requires_grad_(True)
    kept = dorefa_quantize_param(w, _meta(bits), keep_zeros=True)
    plain = dorefa_quantize_param(w, _meta(bits))
    pruned = w.detach() == 0
    assert (kept.detach()[pruned] == 0).all() and (plain.detach()[pruned] != 0).all()
    assert torch.equal(kept.detach()[~pruned], plain.detach()[~pruned])
    assert _distinct(kept) <= 2**bits + 1 and _distinct(plain) <= 2**bits
    (grad_kept,) = torch.autograd.grad(kept.sum(), w)
    (grad_plain,) = torch.autograd.grad(plain.sum(), w)
    assert torch.equal(grad_kept, grad_plain)


def test_pact_keeps_pruned_weights_at_zero_by_default():
    torch.manual_seed(0)
    model = _Net()
    with torch.no_grad():
        model.conv2.weight[:4] = 0
    PACTQuantizer(model, None, bits_activations=None, bits_weights=3).prepare_model()
    assert (model.conv2.weight[:4] == 0).all() and (model.conv2.weight[4:] != 0).all()
    model2 = _Net()
    with torch.no_grad():
        model2.conv2.weight[:4] = 0
    DorefaQuantizer(model2, None, bits_weights=3, keep_pruned_zeros=False).prepare_model()
    assert (model2.conv2.weight[:4] != 0).all()  # the original's behaviour


def test_dorefa_binary_weights_are_sign_times_mean_abs_with_a_straight_through_gradient():
    w = torch.tensor([[-0.5, 0.25], [0.0, 1.25]], requires_grad=True)
    q = dorefa_quantize_param(w, _meta(1))
    assert torch.equal(q.detach(), torch.tensor([[-0.5, 0.5], [0.5, 0.5]]))
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_dorefa_gradient_flows_through_tanh_and_straight_through_rounding():
    w = torch.randn(16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    dorefa_quantize_param(w, _meta(3)).sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_wrpn_weights_are_clamped_and_symmetric_with_k_minus_1_bits(bits):
    w = torch.linspace(-1.5, 1.5, 301)
    q = wrpn_quantize_param(w, _meta(bits))
    n = 2 ** (bits - 1) - 1
    assert _distinct(q) == 2 * n + 1 <= 2**bits
    assert q.min() == -1 and q.max() == 1
    assert torch.allclose(q * n, (q * n).round())


def test_wrpn_needs_two_weight_bits():
    with pytest.raises(ConfigError, match="at least 2 bits"):
        WRPNQuantizer(_Net(), None, bits_weights=1)
    with pytest.raises(ConfigError, match=r"overrides\.fc\.bits_weights: WRPN"):
        WRPNQuantizer(_Net(), None, bits_weights=4, overrides={"fc": {"bits_weights": 1}})


@pytest.mark.parametrize("mode", ["SYMMETRIC", "SYMMETRIC_RESTRICTED", "ASYMMETRIC_UNSIGNED", "ASYMMETRIC_SIGNED"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_range_linear_weights_take_at_most_2_pow_k_values_per_range(mode, per_channel):
    torch.manual_seed(0)
    model = _Net()
    q = QuantAwareTrainRangeLinearQuantizer(
        model, None, bits_activations=4, bits_weights=4, mode=mode, per_channel_wts=per_channel
    )
    q.prepare_model()
    model(_data()[0])
    w, fp = model.conv2.weight, model.conv2.float_weight.detach()
    rows = list(w) if per_channel else [w]
    assert all(_distinct(r) <= 16 for r in rows)
    scale, zp = model.conv2.weight_scale, model.conv2.weight_zero_point
    assert scale.shape == ((8, 1, 1, 1) if per_channel else ()) and zp.shape == scale.shape
    integers = w * scale - zp
    assert torch.allclose(integers, integers.round(), atol=1e-3)
    assert (w - fp).abs().max() <= (0.5 / scale).max() + 1e-6  # rounding error of at most half a step
    assert "conv2.weight_scale" in model.state_dict()


# --- activations -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4])
def test_dorefa_and_wrpn_activations_are_clipped_to_0_1_with_2_pow_k_levels(bits):
    for cls in (DorefaQuantizer, WRPNQuantizer):
        torch.manual_seed(0)
        model = _Net()
        cls(model, None, bits_activations=bits, bits_weights=4).prepare_model()
        assert isinstance(model.relu1, ClippedLinearQuantization) and model.relu1.clip_val == 1.0
        acts = _capture_activations(model, (ClippedLinearQuantization,))
        model(_data()[0])
        for out in acts.values():
            assert out.min() >= 0 and out.max() <= 1
            assert _distinct(out) <= 2**bits
            assert torch.allclose(out * (2**bits - 1), (out * (2**bits - 1)).round(), atol=1e-5)


def test_pact_activations_have_2_pow_k_levels_in_0_alpha():
    x = torch.linspace(-2, 5, 1001)
    act = LearnedClippedLinearQuantization(3, init_act_clip_val=2.0)
    out = act(x).detach()
    assert _distinct(out) == 8
    assert out.min() == 0 and out.max() == pytest.approx(2.0)
    assert torch.allclose(out * 7 / 2, (out * 7 / 2).round(), atol=1e-5)


def test_pact_gradients_follow_the_paper():
    x = torch.tensor([-1.0, 0.5, 1.0, 2.0, 3.0], requires_grad=True)
    act = LearnedClippedLinearQuantization(4, init_act_clip_val=2.0)
    out = act(x)
    out.backward(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert torch.equal(x.grad, torch.tensor([0.0, 2.0, 3.0, 0.0, 0.0]))  # only inside (0, alpha)
    assert torch.equal(act.clip_val.grad, torch.tensor([9.0]))  # sum where x >= alpha


@pytest.mark.parametrize("mode", ["SYMMETRIC", "ASYMMETRIC_UNSIGNED", "ASYMMETRIC_SIGNED"])
def test_range_linear_activations_have_at_most_2_pow_k_levels(mode):
    torch.manual_seed(0)
    model = _Net()
    QuantAwareTrainRangeLinearQuantizer(model, None, bits_activations=3, bits_weights=8, mode=mode).prepare_model()
    assert isinstance(model.relu1, FakeQuantizationWrapper)
    acts = _capture_activations(model, (FakeQuantizationWrapper,))
    for _ in range(3):
        model(_data()[0])
    model.eval()
    model(_data(seed=1)[0])
    for name, out in acts.items():
        assert out.min() >= 0, name  # ReLU outputs: in symmetric mode too, the unsigned half-grid is used
        assert _distinct(out) <= 8, name
    fq = model.relu1.fake_q
    if mode == "SYMMETRIC":
        assert fq.half_range and (fq.qmin, fq.qmax) == (0, 7)


def test_range_linear_input_is_quantized_by_a_hook_not_by_patching_the_class():
    torch.manual_seed(0)
    model, other = _Net(), _Net()
    q = QuantAwareTrainRangeLinearQuantizer(model, None, bits_activations=4, bits_weights=8, num_bits_inputs=2)
    q.prepare_model()
    assert type(model) is type(other) and type(model).forward is _Net.forward
    assert isinstance(model.inputs_quant, FakeLinearQuantization) and model.inputs_quant.num_bits == 2
    seen = []
    model.conv1.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model(_data()[0])
    assert _distinct(seen[0]) <= 4
    assert "inputs_quant.tracked_max" in model.state_dict()
    other(_data()[0])  # another instance of the class is untouched
    q2 = QuantAwareTrainRangeLinearQuantizer(_Net(), None, bits_activations=4, quantize_inputs=False)
    q2.prepare_model()
    assert not hasattr(q2.model, "inputs_quant")


def test_ema_is_bias_corrected():
    biased, unbiased = update_ema(torch.tensor(0.0), torch.tensor(4.0), 0.9, 1)
    assert biased.item() == pytest.approx(0.4) and unbiased.item() == pytest.approx(4.0)
    fq = FakeLinearQuantization(8, LinearQuantMode.ASYMMETRIC_UNSIGNED, ema_decay=0.9)
    fq(torch.tensor([-1.0, 3.0]))
    assert fq.tracked_min.item() == pytest.approx(-1.0) and fq.tracked_max.item() == pytest.approx(3.0)
    fq(torch.tensor([-3.0, 5.0]))
    # biased: 0.9 * 0.3 + 0.1 * 5 = 0.77; corrected by 1 - 0.81
    assert fq.tracked_max.item() == pytest.approx(0.77 / 0.19)
    assert fq.iter_count.item() == 2
    fq.eval()
    fq(torch.tensor([100.0]))
    assert fq.iter_count.item() == 2  # evaluation does not track
    assert fq.scale.item() == pytest.approx(255 / (fq.tracked_max - fq.tracked_min).item())


def test_range_linear_activation_gradient_is_zero_outside_the_tracked_range():
    fq = FakeLinearQuantization(8, LinearQuantMode.SYMMETRIC, ema_decay=0.5)
    fq(torch.tensor([-2.0, 2.0]))
    fq.eval()
    x = torch.tensor([-3.0, -1.0, 0.5, 2.5], requires_grad=True)
    fq(x).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 0.0]))


class _NCFLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb_u = nn.Embedding(5, 4)
        self.emb_i = nn.Embedding(5, 4)
        self.mult = EltwiseMult()
        self.cat = Concat(dim=1)
        self.fc = nn.Linear(8, 1)
        self.act = nn.Sigmoid()

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        a, b = self.emb_u(u), self.emb_i(i)
        return self.act(self.fc(self.cat(self.mult(a, b), a)))


def test_ncf_quantizer_wraps_mult_concat_and_linear_outputs_and_not_the_input():
    torch.manual_seed(0)
    model = _NCFLike()
    q = NCFQuantAwareTrainQuantizer(model, None, bits_activations=4, bits_weights=4, per_channel_wts=True)
    q.prepare_model()
    for name in ("mult", "cat", "fc", "act"):
        assert isinstance(getattr(model, name), FakeQuantizationWrapper), name
    assert isinstance(model.fc.wrapped_module.float_weight, nn.Parameter)
    assert model.emb_u.weight_scale.dim() == 0  # embeddings are never quantized per channel
    assert not hasattr(model, "inputs_quant")
    u = torch.tensor([0, 1, 2])
    out = model(u, u)
    out.sum().backward()
    assert model.emb_u.float_weight.grad is not None
    assert _distinct(model.fc.wrapped_module.weight[0]) <= 16


# --- training --------------------------------------------------------------------------------------


def test_pact_alpha_receives_gradients_and_changes_while_training():
    torch.manual_seed(0)
    model = _Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    q = PACTQuantizer(
        model, opt, bits_activations=4, bits_weights=4, act_clip_init_val=1.0, act_clip_decay=0.0, scale_weights=True
    )
    q.prepare_model()
    start = [p.detach().clone() for p in q.clip_params()]
    x, y = _data(64)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        assert all(p.grad is not None for p in q.clip_params())
        opt.step()
        losses.append(loss.item())
    assert any(p.grad.abs().sum() > 0 for p in q.clip_params())
    assert all(not torch.equal(p.detach(), s) for p, s in zip(q.clip_params(), start))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (DorefaQuantizer, {"bits_activations": 4, "bits_weights": 3}),
        (PACTQuantizer, {"bits_activations": 4, "bits_weights": 3, "act_clip_init_val": 2.0}),
        (WRPNQuantizer, {"bits_activations": 4, "bits_weights": 4}),
        (QuantAwareTrainRangeLinearQuantizer, {"bits_activations": 8, "bits_weights": 4, "per_channel_wts": True}),
    ],
    ids=["dorefa", "pact", "wrpn", "range_linear"],
)
def test_every_qat_quantizer_trains_a_small_model(cls, kwargs):
    torch.manual_seed(0)
    model = _Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    cls(model, opt, **kwargs).prepare_model()
    x, y = _data(64)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first
