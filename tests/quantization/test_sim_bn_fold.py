"""Simulated batch-norm folding for QAT: the folded module trains exactly like the unfolded layer -> BN pair."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from distiller.errors import QuantizationError
from distiller.quantization.sim_bn_fold import SimulatedFoldedBatchNorm
from distiller.quantization.ste import linear_quantize_ste

# float64 runs: the folded and unfolded graphs differ only by rounding
RTOL, ATOL = 1e-7, 1e-9
# float32 run
RTOL32, ATOL32 = 1e-3, 1e-4

LAYERS = {
    "linear": (lambda bias: nn.Linear(6, 5, bias=bias), nn.BatchNorm1d, (8, 6)),
    "conv1d": (lambda bias: nn.Conv1d(3, 5, 3, bias=bias), nn.BatchNorm1d, (4, 3, 9)),
    "conv2d": (lambda bias: nn.Conv2d(3, 5, 3, padding=1, bias=bias), nn.BatchNorm2d, (4, 3, 6, 6)),
    "conv3d": (lambda bias: nn.Conv3d(2, 4, 2, bias=bias), nn.BatchNorm3d, (3, 2, 4, 4, 4)),
    "grouped": (lambda bias: nn.Conv2d(4, 6, 3, groups=2, stride=2, bias=bias), nn.BatchNorm2d, (4, 4, 7, 7)),
}


def _pair(kind: str, *, bias: bool = True, affine: bool = True, momentum: float | None = 0.1, dtype=torch.float64):
    make_layer, bn_type, shape = LAYERS[kind]
    g = torch.Generator().manual_seed(0)
    layer = make_layer(bias)
    bn = bn_type(layer.weight.shape[0], affine=affine, momentum=momentum)
    with torch.no_grad():
        n = bn.num_features
        bn.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
        bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        if affine:
            bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(n, generator=g) - 0.5)
    unfolded = nn.Sequential(layer, bn).to(dtype)
    folded = SimulatedFoldedBatchNorm(copy.deepcopy(layer), copy.deepcopy(bn)).to(dtype)
    return folded, unfolded, shape


def _close(a: torch.Tensor | None, b: torch.Tensor | None, rtol: float = RTOL, atol: float = ATOL) -> None:
    assert (a is None) == (b is None)
    if a is not None:
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def _params(folded: SimulatedFoldedBatchNorm, unfolded: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    layer, bn = unfolded
    return [
        (folded.param_module.weight, layer.weight),
        (folded.param_module.bias, layer.bias),
        (folded.bn.weight, bn.weight),
        (folded.bn.bias, bn.bias),
    ]


def _step(folded, unfolded, opt_f, opt_u, shape, g, dtype, rtol=RTOL, atol=ATOL) -> None:
    """One SGD step on both with the same batch; outputs, input/parameter gradients and parameters match."""
    x = torch.randn(shape, generator=g, dtype=dtype)
    x_f, x_u = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_f, out_u = folded(x_f), unfolded(x_u)
    _close(out_f, out_u, rtol, atol)
    target = torch.randn(out_u.shape, generator=g, dtype=dtype)
    opt_f.zero_grad()
    opt_u.zero_grad()
    nn.functional.mse_loss(out_f, target).backward()
    nn.functional.mse_loss(out_u, target).backward()
    _close(x_f.grad, x_u.grad, rtol, atol)
    for p_f, p_u in _params(folded, unfolded):
        if p_u is not None:
            _close(p_f.grad, p_u.grad, rtol, atol)
    opt_f.step()
    opt_u.step()
    for p_f, p_u in _params(folded, unfolded):
        _close(p_f, p_u, rtol, atol)
    _close(folded.bn.running_mean, unfolded[1].running_mean, rtol, atol)
    _close(folded.bn.running_var, unfolded[1].running_var, rtol, atol)
    assert int(folded.bn.num_batches_tracked) == int(unfolded[1].num_batches_tracked)


def _check_eval(folded, unfolded, shape, g, dtype, rtol=RTOL, atol=ATOL) -> None:
    folded.eval()
    unfolded.eval()
    x = torch.randn(shape, generator=g, dtype=dtype)
    with torch.no_grad():
        _close(folded(x), unfolded(x), rtol, atol)
        _close(folded.fold_for_inference()(x), unfolded(x), rtol, atol)


def _run(folded, unfolded, shape, dtype=torch.float64, rtol=RTOL, atol=ATOL, steps=4, frozen_steps=3) -> None:
    g = torch.Generator().manual_seed(1)
    settings = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2}
    opt_f = torch.optim.SGD(folded.parameters(), **settings)
    opt_u = torch.optim.SGD(unfolded.parameters(), **settings)
    for _ in range(steps):
        folded.train()
        unfolded.train()
        _step(folded, unfolded, opt_f, opt_u, shape, g, dtype, rtol, atol)
        _check_eval(folded, unfolded, shape, g, dtype, rtol, atol)
    assert folded.steps == steps and not folded.frozen

    # frozen: trains like the layer followed by the batch norm in eval mode; running stats stay put
    folded.freeze()
    stats = folded.bn.running_mean.clone(), folded.bn.running_var.clone()
    for _ in range(frozen_steps):
        folded.train()
        unfolded[0].train()
        unfolded[1].eval()
        _step(folded, unfolded, opt_f, opt_u, shape, g, dtype, rtol, atol)
    assert torch.equal(folded.bn.running_mean, stats[0]) and torch.equal(folded.bn.running_var, stats[1])
    assert folded.steps == steps
    _check_eval(folded, unfolded, shape, g, dtype, rtol, atol)


# --- rejected sequences ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "bn"),
    [
        (nn.Linear(3, 4), nn.BatchNorm2d(4)),
        (nn.Conv1d(3, 4, 1), nn.BatchNorm2d(4)),
        (nn.Conv2d(3, 4, 1), nn.BatchNorm1d(4)),
        (nn.Conv2d(3, 4, 1), nn.BatchNorm3d(4)),
        (nn.Conv3d(3, 4, 1), nn.BatchNorm2d(4)),
        (nn.ConvTranspose2d(3, 4, 1), nn.BatchNorm2d(4)),
        (nn.ReLU(), nn.BatchNorm2d(4)),
        (nn.Conv2d(3, 4, 1), nn.ReLU()),
        (nn.Conv2d(3, 4, 1), nn.SyncBatchNorm(4)),
        (nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)),
    ],
    ids=lambda m: type(m).__name__,
)
def test_bad_sequences_rejected(layer: nn.Module, bn: nn.Module) -> None:
    with pytest.raises(QuantizationError, match=f"{type(layer).__name__} -> {type(bn).__name__}"):
        SimulatedFoldedBatchNorm(layer, bn)


def test_bad_batch_norms_and_inputs_rejected() -> None:
    with pytest.raises(QuantizationError, match="running statistics"):
        SimulatedFoldedBatchNorm(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
    with pytest.raises(QuantizationError, match="4 outputs but the batch norm 5"):
        SimulatedFoldedBatchNorm(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5))
    with pytest.raises(QuantizationError, match="freeze_bn_delay"):
        SimulatedFoldedBatchNorm(nn.Linear(3, 4), nn.BatchNorm1d(4), freeze_bn_delay=-1)
    folded = SimulatedFoldedBatchNorm(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with pytest.raises(QuantizationError, match="2-D"):
        folded(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        folded(torch.randn(1, 3))


# --- folded vs unfolded ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(LAYERS))
def test_matches_unfolded(kind: str) -> None:
    folded, unfolded, shape = _pair(kind)
    _run(folded, unfolded, shape)


@pytest.mark.parametrize(
    ("kind", "bias", "affine", "momentum"),
    [
        ("linear", False, True, 0.1),
        ("conv2d", False, False, 0.1),
        ("conv1d", True, False, None),
        ("conv3d", False, True, None),
    ],
)
def test_matches_unfolded_variants(kind: str, bias: bool, affine: bool, momentum: float | None) -> None:
    folded, unfolded, shape = _pair(kind, bias=bias, affine=affine, momentum=momentum)
    _run(folded, unfolded, shape)


def test_matches_unfolded_float32() -> None:
    folded, unfolded, shape = _pair("conv2d", dtype=torch.float32)
    _run(folded, unfolded, shape, dtype=torch.float32, rtol=RTOL32, atol=ATOL32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_matches_unfolded_cuda() -> None:
    folded, unfolded, shape = _pair("conv2d", dtype=torch.float64)
    folded, unfolded = folded.cuda(), unfolded.cuda()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64).cuda()
    _close(folded(x), unfolded(x))
    _close(folded.bn.running_var, unfolded[1].running_var)
    folded.eval()
    unfolded.eval()
    _close(folded(x), unfolded(x))
    _close(folded.fold_for_inference()(x), unfolded(x))


# --- freezing, state, deployment -------------------------------------------------------------------------


def test_freeze_after_delay() -> None:
    folded = SimulatedFoldedBatchNorm(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), freeze_bn_delay=3)
    x = torch.randn(2, 3, 5, 5)
    for _ in range(3):
        folded(x)
        folded.eval()(x)  # eval passes are not training steps
        folded.train()
    assert not folded.frozen and int(folded.bn.num_batches_tracked) == 3
    running_mean = folded.bn.running_mean.clone()
    out = folded(x)  # the 4th training step uses the running statistics
    assert folded.frozen and folded.steps == 3
    assert torch.equal(folded.bn.running_mean, running_mean) and int(folded.bn.num_batches_tracked) == 3
    torch.testing.assert_close(out, folded.fold_for_inference()(x))

    # the step count and the frozen flag travel with the state dict
    other = SimulatedFoldedBatchNorm(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    other.load_state_dict(folded.state_dict())
    assert other.frozen and other.steps == 3
    assert SimulatedFoldedBatchNorm(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), freeze_bn_delay=0)(x) is not None


def test_data_parallel_replica_steps_count() -> None:
    """nn.DataParallel runs shallow replicas whose first-device buffers are the module's: the steps and the
    freezing they trigger must reach the wrapped module (a Python counter on the replica would be lost)."""
    folded = SimulatedFoldedBatchNorm(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), freeze_bn_delay=2)
    x = torch.randn(2, 3, 5, 5)
    folded(x)  # one step on the module itself
    for _ in range(2):
        folded._replicate_for_data_parallel()(x)  # what DataParallel does each step
    assert folded.steps == 2 and folded.frozen and int(folded.bn.num_batches_tracked) == 2


def test_fold_for_inference_plain_layer() -> None:
    folded, unfolded, shape = _pair("conv2d", bias=False)
    layer = folded.fold_for_inference()
    assert type(layer) is nn.Conv2d and layer.bias is not None and layer is not folded.param_module
    assert folded.param_module.bias is None  # the wrapper is unchanged
    x = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        _close(layer(x), unfolded.eval()(x))


def test_param_quantization_fn_ste() -> None:
    """The folded weight and bias go through the quantizer; the STE lets gradients reach every parameter."""
    seen: list[torch.Tensor] = []

    def quantize(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.detach().clone())
        return linear_quantize_ste(t, 64.0, 0.0)  # a grid of 1/64

    folded, unfolded, shape = _pair("conv2d", dtype=torch.float32)
    folded.param_quantization_fn = quantize
    x = torch.randn(shape)

    folded.eval()
    unfolded.eval()
    out = folded(x)
    layer = folded.fold_for_inference()
    torch.testing.assert_close(seen[0], layer.weight.detach())
    torch.testing.assert_close(seen[1], layer.bias.detach())
    expected = layer._conv_forward(x, torch.round(layer.weight * 64) / 64, torch.round(layer.bias * 64) / 64)
    torch.testing.assert_close(out, expected)
    assert (out - unfolded(x)).abs().max() > 0  # the quantization is visible...
    out.sum().backward()
    for p in folded.parameters():  # ...and trainable through
        assert p.grad is not None and torch.isfinite(p.grad).all()

    # training: the weight is folded with the running sigma before quantization; the output stays close
    # to the unfolded training output (batch statistics)
    seen.clear()
    folded.train()
    unfolded.train()
    folded.zero_grad()
    sigma = torch.sqrt(folded.bn.running_var + folded.bn.eps)
    out = folded(x)
    w = folded.param_module.weight.detach() * (folded.bn.weight.detach() / sigma).view(-1, 1, 1, 1)
    torch.testing.assert_close(seen[0], w)
    assert len(seen) == 2
    torch.testing.assert_close(out, unfolded(x), rtol=0, atol=0.25)
    out.sum().backward()
    for p in folded.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
