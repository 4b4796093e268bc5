"""Per-batch records, raw activations and the histogram collector's re-export."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from distiller.analysis import (
    ActivationHistogramsCollector,
    RawActivationsCollector,
    RecordsActivationStatsCollector,
    collector_context,
)
from distiller.analysis.raw_activations import activation_file_names
from distiller.analysis.records import batch_record
from distiller.errors import ConfigError
from distiller.quantization import histograms as quant_histograms
from distiller.quantization.calibration import calibration_forward, collect_quant_stats


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)  # overwrites conv1's output in place
        self.conv2 = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(2 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv2(self.relu(self.conv1(x))).flatten(1))


def batches(*sizes: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, 1, 4, 4, generator=g) for n in sizes]


def feed(model: nn.Module, inputs: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for x in inputs:
            model(x)


def test_batch_record_is_hand_computed() -> None:
    x = torch.tensor([[[3.0, 4.0]], [[0.0, -1.0]]])  # two samples of two values
    record = batch_record(x)
    assert record["min"] == -1.0 and record["max"] == 4.0 and record["mean"] == pytest.approx(1.5)
    assert record["std"] == pytest.approx(math.sqrt(((1.5**2) + (2.5**2) + (1.5**2) + (2.5**2)) / 4))
    assert record["l2"] == pytest.approx((5.0 + 1.0) / 2)  # per-sample norms 5 and 1
    assert batch_record(torch.tensor([[2.0]]))["std"] == 0.0  # one element: 0, not NaN


def test_records_have_one_entry_per_batch_per_conv() -> None:
    net = Net()
    collector = RecordsActivationStatsCollector(net)
    inputs = batches(4, 4, 3)
    with collector:
        feed(net, inputs)
    records = collector.value()
    assert list(records) == ["conv1", "conv2"]  # Conv2d only, in model order
    for per_module in records.values():
        assert set(per_module) == {"min", "max", "mean", "std", "l2", "shape"}
        assert all(len(values) == 3 for values in per_module.values())
    assert records["conv2"]["shape"] == ["(4, 2, 4, 4)", "(4, 2, 4, 4)", "(3, 2, 4, 4)"]
    with torch.no_grad():
        expected = batch_record(net.conv2(net.relu(net.conv1(inputs[2]))))
    assert records["conv2"]["max"][2] == pytest.approx(expected["max"])
    assert records["conv2"]["l2"][2] == pytest.approx(expected["l2"])
    assert collector.reset().value() == {}


def test_records_dataframes_and_files(tmp_path) -> None:
    net = Net()
    collector = RecordsActivationStatsCollector(net, classes=[nn.Conv2d, nn.Linear])
    with collector:
        feed(net, batches(2, 2))
    long = collector.to_dataframe()
    assert list(long.columns) == ["module", "batch", "min", "max", "mean", "std", "l2", "shape"]
    assert len(long) == 3 * 2 and long["module"].tolist() == ["conv1", "conv1", "conv2", "conv2", "fc", "fc"]
    per_layer = collector.to_dataframes()
    assert list(per_layer) == ["conv1", "conv2", "fc"] and per_layer["fc"].index.name == "batch"

    book = pd.read_excel(collector.save(tmp_path / "records.xlsx"), sheet_name=None, index_col=0)
    assert list(book) == ["modules", "conv1", "conv2", "fc"]
    assert book["modules"]["sheet"].tolist() == ["conv1", "conv2", "fc"]
    assert book["conv2"]["max"].tolist() == pytest.approx(per_layer["conv2"]["max"].tolist())
    csv = pd.read_csv(collector.save(tmp_path / "records.csv"))
    assert csv.shape == (6, 8) and csv["l2"].tolist() == pytest.approx(long["l2"].tolist())


def test_raw_activations_are_cpu_copies_joined_by_sample(tmp_path) -> None:
    net = Net()
    collector = RawActivationsCollector(net)
    inputs = batches(2, 3)
    with collector_context(collector):
        feed(net, inputs)
    raw = collector.value()
    assert list(raw) == ["conv1", "relu", "conv2", "fc"]  # every leaf
    assert raw["conv1"].shape == (5, 3, 4, 4) and raw["fc"].shape == (5, 5)
    assert len(collector.batches()["conv1"]) == 2
    # The in-place ReLU overwrote conv1's output after the hook: the stored copy keeps negatives.
    assert (raw["conv1"] < 0).any() and not (raw["relu"] < 0).any()
    with torch.no_grad():
        assert torch.allclose(raw["fc"], net(torch.cat(inputs)))
    frame = collector.to_dataframe()
    assert frame.loc["conv1", "batches"] == 2 and frame.loc["fc", "shape"] == "(5, 5)"

    paths = collector.save(tmp_path / "raw")
    assert [p.name for p in paths] == ["conv1.pt", "relu.pt", "conv2.pt", "fc.pt"]
    assert torch.equal(torch.load(paths[0], weights_only=True), raw["conv1"])
    with pytest.raises(ConfigError, match="folder"):
        collector.save(paths[0])


def test_raw_outputs_that_cannot_be_joined_are_refused() -> None:
    net = nn.Sequential(nn.Flatten())
    collector = RawActivationsCollector(net)
    with collector:
        feed(net, [torch.zeros(1, 2, 2), torch.zeros(1, 3, 3)])
    with pytest.raises(ConfigError, match="batches"):
        collector.value()
    assert [t.shape for t in collector.batches()["0"]] == [(1, 4), (1, 9)]


def test_activation_file_names_are_safe_and_unique() -> None:
    names = activation_file_names(["a.b", "a/b", "a:b", "A.B"])
    assert names == {"a.b": "a.b.pt", "a/b": "a_b.pt", "a:b": "a_b~2.pt", "A.B": "A.B~2.pt"}


def test_histograms_collector_is_the_quantization_one_with_exact_counts() -> None:
    assert ActivationHistogramsCollector is quant_histograms.ActivationHistogramsCollector
    net = Net()
    inputs = batches(3, 2)
    run_forward = calibration_forward(inputs)
    stats = collect_quant_stats(net, run_forward)
    collector = ActivationHistogramsCollector(net, stats, nbins=16)
    with collector, torch.no_grad():
        run_forward(net)
    histograms = collector.value()
    assert list(histograms) == ["conv1", "relu", "conv2", "fc"]
    out = histograms["conv1"]["output"]
    assert out["hist"].dtype == torch.int64 and out["hist"].shape == (16,) and out["bin_edges"].shape == (17,)
    assert int(out["hist"].sum()) == out["total_numel"] == 5 * 3 * 4 * 4
