"""LAPQ (loss-aware post-training quantization): initialisation, joint search, parameters in and out."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from distiller.data.digits import _arrays
from distiller.errors import ConfigError, QuantizationError
from distiller.models import create_model
from distiller.quantization import PostTrainLinearQuantizer, calibrate
from distiller.quantization.linear import linear_quantize_clamp

pytest.importorskip("scipy")

from distiller.quantization.lapq import (  # noqa: E402
    apply_quant_params,
    init_linear_quant_params,
    lapq_eval_fn,
    model_quant_params,
    ptq_coordinate_search,
)

FOUR_BITS = {"bits_activations": 4, "bits_parameters": 4}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is much faster than two on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    """A trained simplenet_digits, calibration statistics, and a two-batch loss (the LAPQ objective)."""
    torch.manual_seed(0)
    images, labels, is_test = _arrays()
    x, y = images[~is_test], labels[~is_test]
    model = create_model("simplenet_digits", "digits")
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(3):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]
    stats = calibrate(model, batches, x[:1])
    eval_fn = lapq_eval_fn(batches[:2], nn.CrossEntropyLoss(), memoize=True)
    return model, stats, eval_fn, x[:1]


def _quantizer(digits, **settings):
    model, stats, _, _ = digits
    return PostTrainLinearQuantizer(copy.deepcopy(model), model_activation_stats=stats, **{**FOUR_BITS, **settings})


def _init_loss(digits, init_mode, search_clipping=False, **settings):
    _, _, eval_fn, example = digits
    model = init_linear_quant_params(
        _quantizer(digits, **settings), example, eval_fn, init_mode, search_clipping=search_clipping
    )
    return eval_fn(model), model_quant_params(model)


def test_search_lowers_the_loss_of_its_initialisation(digits):
    _, _, eval_fn, example = digits
    init_loss, init_params = _init_loss(digits, "NONE")
    model, best = ptq_coordinate_search(_quantizer(digits), example, eval_fn, init_mode="NONE", maxiter=1, maxfev=150)
    loss = eval_fn(model)
    assert loss <= init_loss
    assert loss < init_loss  # 4 bits leave room: observed 0.041 -> 0.021
    changed = [
        (m, p) for m, values in best.items() for p, v in values.items() if not math.isclose(v, init_params[m][p])
    ]
    assert changed
    # the returned parameters are the model's, as plain floats
    assert all(type(v) is float for values in best.values() for v in values.values())
    for module, values in best.items():
        for name, value in values.items():
            assert model_quant_params(model)[module][name] == pytest.approx(value)


def test_only_parameters_a_forward_reads_are_searched(digits):
    _, _, eval_fn, example = digits
    _, best = ptq_coordinate_search(_quantizer(digits), example, eval_fn, maxiter=1, maxfev=5)
    # conv2 and pool take their input from the producer's metadata; max-pool passes it through;
    # fc's input lost the metadata in torch.flatten, so fc quantizes it with its own in0 parameters
    assert set(best) == {"conv1", "conv2", "fc"}
    assert set(best["conv1"]) == {
        "in0_scale",
        "in0_zero_point",
        "w_scale",
        "w_zero_point",
        "output_scale",
        "output_zero_point",
    }
    assert set(best["conv2"]) == {"w_scale", "w_zero_point", "output_scale", "output_zero_point"}
    assert "in0_scale" in best["fc"]


def test_l2_initialisation_beats_plain_min_max(digits):
    none_loss, none_params = _init_loss(digits, "NONE")
    l2_loss, l2_params = _init_loss(digits, "L2")
    assert math.isfinite(l2_loss)
    assert l2_params["conv1"]["output_scale"] != pytest.approx(none_params["conv1"]["output_scale"])
    assert l2_loss <= none_loss  # observed 0.025 vs 0.041


def test_clip_mode_initialisation_matches_the_quantizer_with_that_clip_mode(digits):
    model, stats, eval_fn, example = digits
    init = init_linear_quant_params(_quantizer(digits), example, eval_fn, "AVG")
    direct = _quantizer(digits, clip_acts="AVG", also_clip_weights=True).prepare_model(example)
    got, expected = model_quant_params(init), model_quant_params(direct)
    for module in ("conv1", "conv2", "fc"):
        for name in ("output_scale", "w_scale"):
            assert got[module][name] == pytest.approx(expected[module][name], rel=1e-6)
    assert eval_fn(init) == pytest.approx(eval_fn(direct), rel=1e-6)


def test_search_clipping_with_asymmetric_activations(digits):
    _, _, eval_fn, example = digits
    settings = {"mode": {"activations": "ASYMMETRIC_UNSIGNED", "weights": "SYMMETRIC"}}
    with pytest.raises(QuantizationError, match="search_clipping"):
        ptq_coordinate_search(_quantizer(digits, **settings), example, eval_fn)
    init_loss, _ = _init_loss(digits, "NONE", search_clipping=True, **settings)
    model, best = ptq_coordinate_search(
        _quantizer(digits, **settings), example, eval_fn, search_clipping=True, maxiter=1, maxfev=120
    )
    assert eval_fn(model) <= init_loss
    assert "fc" in best and "output_zero_point" in best["fc"]


def test_basinhopping_runs(digits):
    _, _, eval_fn, example = digits
    init_loss, _ = _init_loss(digits, "GAUSS")
    tests = []
    model, _ = ptq_coordinate_search(
        _quantizer(digits),
        example,
        eval_fn,
        test_fn=lambda m: tests.append(eval_fn(m)),
        init_mode="GAUSS",
        basinhopping=True,
        basinhopping_niter=1,
        maxfev=30,
    )
    assert eval_fn(model) <= init_loss
    assert len(tests) >= 3 and tests[0] == pytest.approx(init_loss)  # after init, per hop, final


def test_consumers_follow_the_producer_scale(digits):
    _, _, eval_fn, example = digits
    model = init_linear_quant_params(_quantizer(digits), example, eval_fn)
    seen = []
    handle = model.conv2.register_forward_pre_hook(lambda m, args: seen.append(float(args[0].quant_metadata.scale)))
    try:
        with torch.no_grad():
            model(example)
            apply_quant_params(model, {"conv1": {"output_scale": 1.25}})
            model(example)
    finally:
        handle.remove()
    assert seen[0] != 1.25 and seen[1] == 1.25


def test_weight_scales_requantize_from_the_float_copy(digits):
    _, _, eval_fn, example = digits
    model = init_linear_quant_params(_quantizer(digits), example, eval_fn)
    conv = model.conv2.wrapped_module
    apply_quant_params(model, {"conv2": {"w_scale": 3.0}})
    expected = linear_quantize_clamp(conv.float_weight, 3.0, 0.0, -8, 7)
    assert torch.equal(conv.weight, expected)


def test_best_parameters_reproduce_the_loss_in_a_fresh_model(digits):
    _, _, eval_fn, example = digits
    model, best = ptq_coordinate_search(_quantizer(digits), example, eval_fn, init_mode="L3", maxiter=1, maxfev=60)
    fresh = init_linear_quant_params(_quantizer(digits), example, eval_fn)
    apply_quant_params(fresh, best)
    assert eval_fn(fresh) == pytest.approx(eval_fn(model), rel=1e-6)


def test_bad_inputs(digits):
    model, _, eval_fn, example = digits
    with pytest.raises(QuantizationError, match="calibrat"):
        ptq_coordinate_search(PostTrainLinearQuantizer(copy.deepcopy(model), **FOUR_BITS), example, eval_fn)
    prepared = _quantizer(digits)
    prepared.prepare_model(example)
    with pytest.raises(QuantizationError, match="prepare_model"):
        ptq_coordinate_search(prepared, example, eval_fn)
    with pytest.raises(ConfigError, match="init mode"):
        ptq_coordinate_search(_quantizer(digits), example, eval_fn, init_mode="L7")
    fresh = init_linear_quant_params(_quantizer(digits), example, eval_fn)
    with pytest.raises(QuantizationError, match="no quantization parameter"):
        apply_quant_params(fresh, {"conv1": {"bias": 1.0}})


def test_eval_fn_memoizes_the_batches():
    reads = []

    class Loader:
        def __iter__(self):
            reads.append(1)
            for _ in range(3):
                yield torch.randn(4, 3), torch.randint(0, 2, (4,))

    model = nn.Linear(3, 2)
    memo = lapq_eval_fn(Loader(), nn.CrossEntropyLoss(), max_batches=2, memoize=True)
    first = memo(model)
    assert memo(model) == first and len(reads) == 1
    plain = lapq_eval_fn(Loader(), nn.CrossEntropyLoss(), max_batches=2)
    plain(model)
    plain(model)
    assert len(reads) == 3


def test_per_channel_weights_keep_their_scales(digits):
    _, _, eval_fn, example = digits
    model, best = ptq_coordinate_search(
        _quantizer(digits, per_channel_wts=True), example, eval_fn, init_mode="L2", maxiter=1, maxfev=20
    )
    assert all("w_scale" not in values for values in best.values())
    assert model.conv1.w_scale.numel() == 16


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv1(x))
        y = torch.relu(self.conv2(y) + y)
        return self.fc(y.mean((2, 3)))


def test_multi_input_layers_with_lp_initialisation():
    torch.manual_seed(0)
    model = Residual().eval()
    data = [(torch.randn(16, 3, 6, 6), torch.randint(0, 4, (16,))) for _ in range(2)]
    stats = calibrate(model, data, data[0][0][:1])
    eval_fn = lapq_eval_fn(data, nn.CrossEntropyLoss())

    def quantizer():
        return PostTrainLinearQuantizer(copy.deepcopy(model), model_activation_stats=stats, **FOUR_BITS)

    init = eval_fn(init_linear_quant_params(quantizer(), data[0][0][:1], eval_fn, "L2"))
    quantized, best = ptq_coordinate_search(quantizer(), data[0][0][:1], eval_fn, init_mode="L2", maxfev=40)
    assert eval_fn(quantized) <= init
    assert "add" in best and "in0_scale" not in best["add"]  # both inputs come with their producers' parameters
