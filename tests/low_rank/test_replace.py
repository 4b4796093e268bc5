"""Replacing layers by their factorizations: exactness, counts, names, optimizer, masks, checkpoints."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

from distiller.checkpoint import load_checkpoint, save_checkpoint
from distiller.errors import CheckpointError, ConfigError
from distiller.low_rank import (
    FactorizedLayer,
    applied_decompositions,
    factorize_layer,
    factorized_cost,
    full_rank,
    low_rank_decompose,
    rank_sweep,
)
from distiller.scheduler.masks import new_masks


class TinyNet(nn.Module):
    input_shape = (3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.fc2(self.relu(self.fc1(torch.flatten(x, 1))))


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> bool:
    actual, expected = actual.detach(), expected.detach()
    return float((actual - expected).abs().max()) <= rel * float(expected.abs().max())


def _net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


# --- exactness at full rank -------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_linear_at_full_rank_is_exact(bias):
    torch.manual_seed(0)
    layer = nn.Linear(37, 23, bias=bias)
    new, _ = factorize_layer(layer, 23)
    x = torch.randn(4, 5, 37)  # Linear on a 3-D input too
    assert _close(new(x), layer(x))
    assert isinstance(new, FactorizedLayer) and new[0].weight.shape == (23, 37) and new[0].bias is None


CONVS = {
    "plain": {"padding": 1},
    "stride-padding": {"stride": 2, "padding": (1, 2)},
    "anisotropic": {"stride": (2, 3), "padding": (2, 1), "dilation": (2, 1)},
    "same": {"padding": "same", "dilation": 2},
    "valid": {"padding": "valid"},
    "reflect": {"padding": 1, "padding_mode": "reflect"},
    "circular-no-bias": {"padding": (2, 1), "padding_mode": "circular", "stride": 2, "bias": False},
}


@pytest.mark.parametrize("method", ["channel", "spatial"])
@pytest.mark.parametrize("config", CONVS.values(), ids=CONVS.keys())
def test_conv_at_full_rank_is_exact(method, config):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, (3, 5), **config)
    new, _ = factorize_layer(conv, full_rank(conv, method), method=method)
    x = torch.randn(2, 6, 13, 11)
    assert new(x).shape == conv(x).shape
    assert _close(new(x), conv(x))


def test_spatial_factors_are_vertical_then_horizontal():
    conv = nn.Conv2d(6, 8, (3, 5), stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    new, _ = factorize_layer(conv, 4, method="spatial")
    first, second = new[0], new[1]
    assert (first.kernel_size, first.stride, first.padding, first.dilation) == ((3, 1), (2, 1), (1, 0), (2, 1))
    assert (second.kernel_size, second.stride, second.padding, second.dilation) == ((1, 5), (1, 3), (0, 2), (1, 1))
    assert first.bias is None and second.bias is not None


def test_truncation_error_shrinks_with_rank():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    x = torch.randn(2, 8, 9, 9)
    errors = []
    for k in (1, 4, 8, 16):
        new, _ = factorize_layer(conv, k, method="channel")
        errors.append(float((new(x) - conv(x)).detach().norm()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-4 * errors[0]


# --- low_rank_decompose ----------------------------------------------------------------------------


def test_decompose_replaces_in_place_and_reports_the_formulas():
    model = _net()
    x = torch.randn(3, 3, 8, 8)
    before = sum(p.numel() for p in model.parameters())
    report = low_rank_decompose(
        model,
        {"fc1": {"rank": 8}, "conv2": {"rank": 5, "method": "spatial"}, "conv1": {"rank": 8, "method": "channel"}},
    )
    assert isinstance(model.fc1, FactorizedLayer) and model.fc1.rank == 8
    assert [n for n, _ in model.fc1.named_parameters()] == ["0.weight", "1.weight", "1.bias"]
    fc1, conv2, conv1 = report["fc1"], report["conv2"], report["conv1"]
    assert (fc1.params_before, fc1.params_after) == (256 * 32 + 32, 8 * (256 + 32) + 32)
    assert (fc1.macs_before, fc1.macs_after) == (256 * 32, 8 * (256 + 32))
    assert fc1.break_even_rank == 256 * 32 // 288 and fc1.full_rank == 32
    assert conv2.params_after == 5 * (8 * 3 + 16 * 3)  # no bias
    # conv2 (8x8 input, stride 2): the vertical conv makes 4 x 8 positions, the horizontal one 4 x 4
    assert conv2.macs_before == 4 * 4 * 16 * 8 * 9
    assert conv2.macs_after == 4 * 8 * 5 * 8 * 3 + 4 * 4 * 16 * 5 * 3
    assert conv1.full_rank == 8 and conv1.energy == pytest.approx(1.0)
    assert report.model_params_before == before
    assert report.model_params_after == sum(p.numel() for p in model.parameters())
    assert list(report.to_frame()["name"]) == ["fc1", "conv2", "conv1"]
    assert model(x).shape == (3, 10)
    assert [(r.module, r.method, r.rank) for r in applied_decompositions(model)] == [
        ("fc1", "linear", 8),
        ("conv2", "spatial", 5),
        ("conv1", "channel", 8),
    ]


def test_decompose_at_full_rank_keeps_the_model_function():
    model = _net()
    x = torch.randn(3, 3, 8, 8)
    expected = model(x)
    low_rank_decompose(model, {"fc1": 32, "fc2": 10, "conv2": {"rank": 24, "method": "spatial"}, "conv1": 8})
    assert _close(model(x), expected)


def test_a_rank_above_break_even_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="distiller.low_rank"):
        low_rank_decompose(_net(), {"fc1": 28})  # break-even 28
    assert not caplog.text
    with caplog.at_level(logging.WARNING, logger="distiller.low_rank"):
        low_rank_decompose(_net(), {"fc1": 29})
    assert "fc1: rank 29 is above the break-even rank 28" in caplog.text


def test_energy_picks_the_smallest_sufficient_rank():
    model = _net()
    report = low_rank_decompose(model, {"fc1": {"energy": 0.8}})
    entry = report["fc1"]
    assert entry.energy >= 0.8
    smaller = low_rank_decompose(_net(), {"fc1": {"rank": entry.rank - 1}})["fc1"]
    assert smaller.energy < 0.8


def test_names_with_and_without_the_dataparallel_prefix():
    for name in ("fc1", "module.fc1"):
        wrapped = nn.DataParallel(_net())
        report = low_rank_decompose(wrapped, {name: 4})
        assert report["fc1"].rank == 4 and isinstance(wrapped.module.fc1, FactorizedLayer)
        assert applied_decompositions(wrapped)[0].module == "fc1"


def test_without_an_input_shape_conv_macs_are_unknown():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    report = low_rank_decompose(model, {"0": 2, "2": 3})
    assert report["0"].macs_before is None and report["0"].macs_after is None
    assert report["2"].macs_after == 3 * (144 + 5)
    report = low_rank_decompose(model, {"0.0": 1}, example_input=torch.randn(1, 3, 8, 8))
    assert report["0.0"].macs_before == 6 * 6 * 2 * 27


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ({"fc": 4}, r"layers.fc: the model has no module 'fc'\. Did you mean 'fc"),
        ({"relu": 2}, "is a ReLU; low-rank factorization supports"),
        ({"fc1": 33}, "exceeds the full rank 32"),
        ({"fc1": 0.9}, r"write 'fc1: \{energy: 0.9\}'"),
        ({"fc1": {"rnak": 3}}, "unknown key 'rnak'. Did you mean 'rank'"),
        ({"fc1": {"rank": 3, "energy": 0.5}}, "layers.fc1 needs exactly one of 'rank'"),
        ({"fc1": {"energy": 2}}, r"layers.fc1.energy must be a fraction in \(0, 1\]"),
        ({"fc1": {"rank": 3, "method": "spatial"}}, "method 'spatial' does not apply"),
        ({"conv1": {"rank": 3, "method": "tucker"}}, "must be one of linear, channel, spatial"),
        ({"fc1": 2, "module.fc1": 3}, "names the layer 'fc1' twice"),
        ({"fc1": {"rank": 2, "split": "half"}}, "layers.fc1.split must be one of"),
        ({}, "non-empty mapping"),
    ],
)
def test_bad_requests_raise_config_errors_and_change_nothing(layers, match):
    model = _net()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError, match=match):
        low_rank_decompose(model, {"conv1": 2, **layers} if layers else layers)
    assert not isinstance(model.conv1, FactorizedLayer)
    assert model.state_dict().keys() == state.keys()


def test_grouped_convolutions_and_factorized_layers_are_refused():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Linear(3, 3))
    with pytest.raises(ConfigError, match="grouped convolution"):
        low_rank_decompose(model, {"0": 2})
    low_rank_decompose(model, {"1": 2})
    with pytest.raises(ConfigError, match="already factorized"):
        low_rank_decompose(model, {"1": 1})


# --- optimizer and masks ---------------------------------------------------------------------------


def _ids(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def test_new_parameters_take_the_old_places_in_the_optimizer():
    model = _net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model(torch.randn(4, 3, 8, 8)).sum()
    loss.backward()
    optimizer.step()
    old = [model.fc1.weight, model.fc1.bias, model.conv2.weight]
    low_rank_decompose(model, {"fc1": 4, "conv2": {"rank": 3, "method": "spatial"}}, optimizer=optimizer)
    names = [_ids(model)[id(p)] for p in optimizer.param_groups[0]["params"]]
    assert names == [n for n, _ in model.named_parameters()]  # what a rebuilt optimizer would list
    assert all(p not in optimizer.state for p in old)
    assert "momentum_buffer" not in optimizer.state.get(model.fc1[0].weight, {})
    assert "momentum_buffer" in optimizer.state[model.fc2.weight]  # untouched layers keep their state
    before = model.fc1[0].weight.detach().clone()
    optimizer.zero_grad()
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.fc1[0].weight)


def test_bias_follows_its_group_and_frozen_weights_stay_frozen():
    model = _net()
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    optimizer = torch.optim.SGD([{"params": weights, "weight_decay": 1e-4}, {"params": biases}], lr=0.1)
    low_rank_decompose(model, {"fc1": 4}, optimizer=optimizer)
    ids = _ids(model)
    first, second = ([ids[id(p)] for p in g["params"]] for g in optimizer.param_groups)
    assert "fc1.0.weight" in first and "fc1.1.weight" in first and "fc1.1.bias" in second
    assert first.index("fc1.0.weight") == [n for n in first if n.endswith("weight")].index("fc1.0.weight")

    model = _net()
    optimizer = torch.optim.SGD([p for n, p in model.named_parameters() if not n.startswith("fc2")], lr=0.1)
    model.fc2.weight.requires_grad_(False)
    low_rank_decompose(model, {"fc2": 3}, optimizer=optimizer)
    trained = {_ids(model).get(id(p)) for p in optimizer.param_groups[0]["params"]}
    assert not any(n.startswith("fc2") for n in trained)
    assert not model.fc2[0].weight.requires_grad


def test_masks_follow_the_new_parameter_names(caplog):
    model = _net()
    masks = new_masks(model)
    masks["fc1.weight"] = torch.ones_like(model.fc1.weight)
    with caplog.at_level(logging.WARNING, logger="distiller.low_rank"):
        low_rank_decompose(model, {"fc1": 4}, masks=masks)
    assert "fc1.weight" not in masks and "fc1.bias" not in masks
    assert all(masks[k].mask is None for k in ("fc1.0.weight", "fc1.1.weight", "fc1.1.bias"))
    assert set(masks) == {n for n, _ in model.named_parameters()}
    assert "sparsity is not kept" in caplog.text


# --- checkpoints -----------------------------------------------------------------------------------


def test_checkpoint_of_a_factorized_model_loads_into_a_fresh_one(tmp_path):
    model = _net()
    low_rank_decompose(model, {"fc1": 6, "conv2": {"energy": 0.9, "method": "spatial"}})
    x = torch.randn(2, 3, 8, 8)
    (path,) = save_checkpoint(tmp_path, model=model, arch=None, dataset=None, epoch=3)
    saved = torch.load(path, weights_only=True)
    assert [r["module"] for r in saved["low_rank"]] == ["fc1", "conv2"]
    fresh = _net(seed=1)
    loaded = load_checkpoint(path, fresh)
    assert not loaded.missing_keys and not loaded.unexpected_keys
    assert torch.equal(fresh(x), model(x))
    assert isinstance(fresh.conv2, FactorizedLayer) and fresh.conv2.rank == model.conv2.rank
    assert len(applied_decompositions(fresh)) == 2  # so that saving it again keeps them


def test_a_record_that_does_not_fit_the_model_is_a_checkpoint_error(tmp_path):
    model = _net()
    low_rank_decompose(model, {"fc1": 6})
    (path,) = save_checkpoint(tmp_path, model=model, arch=None, dataset=None, epoch=0)
    other = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(CheckpointError, match="low-rank factorization .* no module 'fc1'"):
        load_checkpoint(path, other)


def _thin_conv1_filters(model: nn.Module, keep: int) -> None:
    from distiller.thinning import thin_model

    mask = torch.zeros_like(model.conv1.weight)
    mask[:keep] = 1
    with torch.no_grad():
        model.conv1.weight.mul_(mask)
    thin_model(model, {"conv1.weight": mask}, mode="filters")


@pytest.mark.parametrize("order", ["thin-then-factorize", "factorize-then-thin"])
def test_thinning_and_factorization_replay_in_the_order_they_happened(tmp_path, order):
    from distiller.models import create_model

    torch.manual_seed(0)
    model = create_model("simplenet_digits", "digits")
    model.eval()
    if order == "thin-then-factorize":
        _thin_conv1_filters(model, 10)
        low_rank_decompose(model, {"conv2": {"rank": 6, "method": "spatial"}, "fc": 5})
        assert model.conv2[0].in_channels == 10
    else:
        low_rank_decompose(model, {"conv2": {"rank": 6, "method": "channel"}, "fc": 5})
        _thin_conv1_filters(model, 10)
        assert model.conv2[0].in_channels == 10  # the thinning plan sliced the factor's input channels
    (path,) = save_checkpoint(tmp_path, model=model, arch="simplenet_digits", dataset="digits", epoch=0)
    fresh = create_model("simplenet_digits", "digits")
    load_checkpoint(path, fresh)
    fresh.eval()
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(fresh(x), model(x))


# --- rank sweep ------------------------------------------------------------------------------------


def test_rank_sweep_tabulates_each_rank_on_a_copy():
    model = _net()
    model.eval()
    x = torch.randn(16, 3, 8, 8)
    reference = model(x).detach()
    calls = []

    @torch.no_grad()
    def test_fn(m):
        calls.append(m)
        out = m(x)
        agree = float((out.argmax(1) == reference.argmax(1)).float().mean()) * 100
        return agree, 100.0, float((out - reference).pow(2).mean())

    df = rank_sweep(model, "fc1", [1, 4, 16, 32], test_fn)
    assert list(df.columns[:6]) == ["rank", "params", "macs", "top1", "top5", "loss"]
    assert list(df["rank"]) == [1, 4, 16, 32]
    assert list(df["params"]) == [factorized_cost(model.fc1, None, k).params for k in (1, 4, 16, 32)]
    assert df["loss"].iloc[-1] < 1e-9 and df["top1"].iloc[-1] == 100.0
    assert list(df["loss"]) == sorted(df["loss"], reverse=True)
    assert df.attrs["break_even_rank"] == 256 * 32 // 288 and df.attrs["full_rank"] == 32
    assert df.attrs["dense"]["params"] == 256 * 32 + 32 and df.attrs["dense"]["top1"] == 100.0
    assert not isinstance(model.fc1, FactorizedLayer) and all(m is not model for m in calls[:-1])


def test_rank_sweep_checks_every_rank_before_evaluating():
    calls = []
    with pytest.raises(ConfigError, match="exceeds the full rank 32"):
        rank_sweep(_net(), "fc1", [4, 64], lambda m: calls.append(m) or (0, 0, 0))
    assert not calls
