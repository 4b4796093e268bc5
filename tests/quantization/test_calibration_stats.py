"""Calibration statistics for post-training quantization: collection, the stats file, histograms."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from distiller.errors import ConfigError, QuantizationError
from distiller.modules.eltwise import EltwiseAdd
from distiller.quantization import histograms as histograms_module
from distiller.quantization.calibration import (
    STAT_KEYS,
    QuantCalibrationStatsCollector,
    calibration_forward,
    collect_quant_stats,
)
from distiller.quantization.histograms import HISTOGRAMS_FILE, collect_histograms, save_histograms
from distiller.quantization.stats_file import load_quant_stats, save_quant_stats, stats_for
from shared_data import ORIGINAL_SAMPLES, require

ORIGINAL_STATS = ORIGINAL_SAMPLES / "resnet18_quant_stats.yaml"


def expected(data: torch.Tensor, first_batch_shape: tuple[int, ...]) -> dict:
    """The statistics of ``data`` (all batches concatenated along dim 0), computed directly in float64."""
    x = data.double()
    flat = x.reshape(x.shape[0], -1)
    mean = x.mean()
    return {
        "min": x.min().item(),
        "max": x.max().item(),
        "avg_min": flat.amin(dim=1).mean().item(),
        "avg_max": flat.amax(dim=1).mean().item(),
        "mean": mean.item(),
        "std": x.std(unbiased=False).item(),
        "b": (x - mean).abs().mean().item(),
        "shape": str(first_batch_shape),
        "total_numel": x.numel(),
    }


def assert_entry(actual: dict, wanted: dict) -> None:
    assert list(actual) == list(STAT_KEYS)
    assert actual["shape"] == wanted["shape"]
    assert actual["total_numel"] == wanted["total_numel"]
    for key in ("min", "max", "avg_min", "avg_max", "mean", "std", "b"):
        assert actual[key] == pytest.approx(wanted[key], rel=1e-6, abs=1e-6), key


def batches_forward(batches: list[torch.Tensor], calls: list | None = None):
    def run(model: nn.Module) -> None:
        if calls is not None:
            calls.append(1)
        for x in batches:
            model(x)

    return run


@pytest.fixture
def linear_relu() -> nn.Sequential:
    """Linear(3 -> 2) with known weights, then an in-place ReLU."""
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(inplace=True))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 0.0, 3.0]]))
        model[0].bias.copy_(torch.tensor([0.25, -1.0]))
    return model


BATCHES = [
    torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.0, 0.0, 1.0], [4.0, -3.0, 0.5]]),
    torch.tensor([[10.0, 9.0, 8.0], [7.0, 6.5, 12.0]]),  # a different mean: a per-batch b would differ
]


# --- collection ---------------------------------------------------------------------------------


def test_exact_statistics_of_a_linear_and_an_inplace_relu(linear_relu):
    calls: list = []
    stats = collect_quant_stats(linear_relu, batches_forward(BATCHES, calls))

    assert len(calls) == 2  # two passes
    assert list(stats) == ["0", "1"]
    data = torch.cat(BATCHES)
    pre_relu = linear_relu[0](data).detach()
    assert_entry(stats["0"]["inputs"][0], expected(data, (4, 3)))
    assert_entry(stats["0"]["output"], expected(pre_relu, (4, 2)))
    # ReLU(inplace=True) overwrites its input: the input statistics are still the pre-ReLU values.
    assert stats["1"]["inputs"][0]["min"] < 0
    assert_entry(stats["1"]["inputs"][0], expected(pre_relu, (4, 2)))
    assert_entry(stats["1"]["output"], expected(pre_relu.clamp(min=0), (4, 2)))


def test_b_uses_the_mean_of_all_batches_not_each_batch(linear_relu):
    stats = collect_quant_stats(linear_relu, batches_forward(BATCHES))
    data = torch.cat(BATCHES).double()
    per_batch = sum((b.double() - b.double().mean()).abs().sum() for b in BATCHES) / data.numel()
    b = stats["0"]["inputs"][0]["b"]
    assert b == pytest.approx((data - data.mean()).abs().mean().item(), rel=1e-6)
    assert b != pytest.approx(per_batch.item(), rel=1e-3)


def test_statistics_stay_accurate_with_a_large_offset():
    torch.manual_seed(0)
    batches = [10_000.0 + torch.randn(64, 256) for _ in range(8)]
    stats = collect_quant_stats(nn.Sequential(nn.ReLU()), batches_forward(batches))
    data = torch.cat(batches).double()
    entry = stats["0"]["output"]
    assert entry["mean"] == pytest.approx(data.mean().item(), abs=1e-3)
    assert entry["std"] == pytest.approx(data.std(unbiased=False).item(), rel=1e-4)


def test_single_value_samples_use_batch_extremes():
    batches = [torch.tensor([[1.0], [3.0]]), torch.tensor([[-2.0], [5.0], [0.0]])]
    stats = collect_quant_stats(nn.Sequential(nn.ReLU()), batches_forward(batches))
    entry = stats["0"]["inputs"][0]
    assert entry["avg_min"] == pytest.approx((2 * 1.0 + 3 * -2.0) / 5)
    assert entry["avg_max"] == pytest.approx((2 * 3.0 + 3 * 5.0) / 5)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.add = EltwiseAdd(inplace=True)
        self.skip = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add(self.fc(x), self.skip(x))


def test_inplace_add_records_both_inputs_before_the_add():
    torch.manual_seed(1)
    model = _Residual()
    x = torch.randn(5, 4)
    stats = collect_quant_stats(model, batches_forward([x]))
    assert "skip" not in stats  # nn.Identity is not recorded
    assert list(stats["add"]["inputs"]) == [0, 1]
    fc_out = model.fc(x).detach()
    assert_entry(stats["add"]["inputs"][0], expected(fc_out, (5, 4)))
    assert_entry(stats["add"]["inputs"][1], expected(x, (5, 4)))
    assert_entry(stats["add"]["output"], expected(fc_out + x, (5, 4)))


class _SharedRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.fc2(self.relu(self.fc1(x))))


def test_a_module_called_twice_per_forward_is_refused():
    model = _SharedRelu().train()
    with pytest.raises(QuantizationError, match=r"'relu'.*more than once.*distiller\.quantization\.modularize"):
        collect_quant_stats(model, batches_forward([torch.randn(2, 4)]))
    # The hooks are gone and the mode is restored after the error.
    assert model.training
    assert not model.relu._forward_pre_hooks and not model.relu._forward_hooks and not model._forward_hooks


def test_modes_are_restored_per_module_and_eval_is_used_during_calibration():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 3)).train()
    model[1].eval()  # frozen BatchNorm: must stay in eval mode afterwards
    seen: list[bool] = []
    model[0].register_forward_hook(lambda m, a, o: seen.append(m.training))
    collect_quant_stats(model, batches_forward([torch.randn(4, 3)]))
    assert seen == [False, False]
    assert model.training and model[0].training and model[2].training and not model[1].training


def test_integer_inputs_are_skipped_and_dataparallel_is_unwrapped():
    model = nn.DataParallel(nn.Sequential(nn.Embedding(10, 3), nn.ReLU()))
    stats = collect_quant_stats(model, batches_forward([torch.tensor([[1, 2], [3, 9]])]))
    assert list(stats) == ["0", "1"]
    assert "inputs" not in stats["0"] and stats["0"]["output"]["shape"] == "(2, 2, 3)"


def test_classes_filter_and_empty_calibration():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    stats = collect_quant_stats(model, batches_forward([torch.randn(2, 3)]), classes=[nn.ReLU])
    assert list(stats) == ["1"]
    with pytest.raises(QuantizationError, match="no data"):
        collect_quant_stats(model, batches_forward([]))
    with pytest.raises(QuantizationError, match="Conv2d"):
        QuantCalibrationStatsCollector(model, classes=[nn.Conv2d])


def test_calibration_forward_feeds_a_loader_of_input_target_pairs(linear_relu):
    data = torch.cat(BATCHES)
    loader = DataLoader(TensorDataset(data, torch.zeros(len(data))), batch_size=4)
    stats = collect_quant_stats(linear_relu, calibration_forward(loader))
    assert_entry(stats["0"]["inputs"][0], expected(data, (4, 3)))
    first = collect_quant_stats(linear_relu, calibration_forward(loader, max_batches=1))
    assert first["0"]["inputs"][0]["total_numel"] == 12
    with pytest.raises(ConfigError, match="max_batches"):
        calibration_forward(loader, max_batches=0)


# --- the stats file -----------------------------------------------------------------------------


def test_save_and_load_round_trip_exactly(tmp_path, linear_relu):
    stats = collect_quant_stats(linear_relu, batches_forward(BATCHES), save_path=tmp_path / "out" / "stats.yaml")
    path = tmp_path / "out" / "stats.yaml"
    text = path.read_text()
    assert text.startswith("# ") and "shape: (4, 3)" in text
    assert [p.name for p in path.parent.iterdir()] == ["stats.yaml"]  # no temporary file left
    assert load_quant_stats(path) == stats
    raw = yaml.safe_load(text)
    assert list(raw["0"]["inputs"][0]) == list(STAT_KEYS)
    assert load_quant_stats(stats) == stats


def test_the_original_resnet18_stats_file_loads_unchanged(tmp_path):
    path = require(ORIGINAL_STATS)
    raw = yaml.safe_load(path.read_text())
    stats = load_quant_stats(path)
    assert len(stats) == 68 and list(stats) == list(raw)
    assert list(stats["layer1.0.add"]["inputs"]) == [0, 1]
    assert stats["conv1"]["inputs"][0] == raw["conv1"]["inputs"][0]
    assert stats["fc"]["output"]["shape"] == "(256, 1000)"
    save_quant_stats(stats, tmp_path / "copy.yaml")
    assert load_quant_stats(tmp_path / "copy.yaml") == stats
    assert stats_for(stats, "module.layer4.1.relu2") is stats["layer4.1.relu2"]


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("conv1:\n  output:\n    max: 1.0\n", ["conv1", "'min'"]),
        ("- conv1\n- fc\n", ["not a mapping"]),
        ("conv1: 3\n", ["conv1", "not a mapping"]),
        ("conv1:\n  inputs:\n  - {min: 0.0, max: 1.0}\n", ["conv1", "inputs", "not a mapping"]),
        ("conv1:\n  output: {min: 0.0, max: 1.0, avg_mn: 0.1}\n", ["conv1", "avg_mn", "avg_min"]),
        ("conv1:\n  outputs: {min: 0.0, max: 1.0}\n", ["conv1", "outputs", "'output'"]),
        ("conv1:\n  output: {min: low, max: 1.0}\n", ["conv1", "min", "not a number"]),
        ("conv1:\n  output: {min: 2.0, max: 1.0}\n", ["conv1", "finite range"]),
        ("conv1:\n  output: {min: 0.0, max: [1.0\n", ["not valid YAML", "line"]),
        ("", ["empty"]),
    ],
)
def test_malformed_stats_files_name_the_file_and_key(tmp_path, content, fragments):
    path = tmp_path / "bad_stats.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_quant_stats(path)
    message = str(info.value)
    assert "bad_stats.yaml" in message
    for fragment in fragments:
        assert fragment in message


def test_loading_accepts_string_indices_and_yaml_exponents(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("module.conv1:\n  inputs:\n    '0': {min: -1e-5, max: 2}\n")
    stats = load_quant_stats(path)
    assert stats == {"conv1": {"inputs": {0: {"min": -1e-5, "max": 2.0}}}}
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_quant_stats(tmp_path / "missing.yaml")


def test_stats_for_lists_close_names():
    stats = {"layer1.0.conv1": {"output": {"min": 0.0, "max": 1.0}}}
    assert stats_for(stats, "module.layer1.0.conv1")["output"]["max"] == 1.0
    with pytest.raises(QuantizationError, match=r"'layer1\.0\.conv2'.*'layer1\.0\.conv1'"):
        stats_for(stats, "layer1.0.conv2")


# --- histograms ---------------------------------------------------------------------------------


def test_histogram_counts_add_up_to_the_elements_seen(tmp_path, linear_relu):
    stats = collect_quant_stats(linear_relu, batches_forward(BATCHES))
    narrow = {"0": {"inputs": {0: {"min": 0.0, "max": 1.0}}}}  # most inputs fall outside: edge bins
    hists = collect_histograms(
        linear_relu, batches_forward(BATCHES), stats, nbins=16, save_dir=tmp_path, save_images=False
    )
    for name, record in hists.items():
        slots = [*record.get("inputs", {}).items(), ("output", record.get("output"))]
        for slot, hist in slots:
            numel = (
                stats[name]["inputs"][slot]["total_numel"] if slot != "output" else stats[name]["output"]["total_numel"]
            )
            assert hist["hist"].dtype == torch.int64 and hist["hist"].shape == (16,)
            assert hist["bin_edges"].shape == (17,)
            assert int(hist["hist"].sum()) == hist["total_numel"] == numel
    # ReLU outputs start at 0: the first bin holds all clamped negatives' zeros.
    relu_out = hists["1"]["output"]
    assert relu_out["bin_edges"][0].item() == stats["1"]["output"]["min"] == 0.0

    clamped = collect_histograms(linear_relu, batches_forward(BATCHES), narrow, nbins=4)
    counts = clamped["0"]["inputs"][0]["hist"]
    data = torch.cat(BATCHES)
    assert counts[0].item() == int((data < 0.25).sum()) and counts[-1].item() == int((data >= 0.75).sum())
    assert list(clamped) == ["0"]

    saved = torch.load(tmp_path / HISTOGRAMS_FILE, weights_only=True)
    assert torch.equal(saved["1"]["output"]["hist"], relu_out["hist"])


def test_histograms_need_statistics_for_the_model():
    with pytest.raises(QuantizationError, match="statistics"):
        collect_histograms(nn.Sequential(nn.ReLU()), batches_forward([]), {"fc": {"output": {"min": 0, "max": 1}}})


def test_histogram_images_are_optional(tmp_path, linear_relu, monkeypatch):
    stats = collect_quant_stats(linear_relu, batches_forward(BATCHES))
    hists = collect_histograms(linear_relu, batches_forward(BATCHES), stats, nbins=8)
    monkeypatch.setattr(histograms_module, "matplotlib_available", lambda: False)
    with pytest.warns(UserWarning, match="matplotlib"):
        written = save_histograms(hists, tmp_path / "no_images")
    assert written == [tmp_path / "no_images" / HISTOGRAMS_FILE]


def test_histogram_images_are_drawn_with_matplotlib(tmp_path, linear_relu):
    pytest.importorskip("matplotlib")
    stats = collect_quant_stats(linear_relu, batches_forward(BATCHES))
    hists = collect_histograms(linear_relu, batches_forward(BATCHES), stats, nbins=8)
    written = save_histograms(hists, tmp_path)
    assert [p.name for p in written] == [HISTOGRAMS_FILE, "0.png", "1.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written[1:])
