"""Summary collectors (sparsity, per-channel L1/APoZ/mean), context managers, phase collectors, files."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from distiller.analysis import (
    ActivationStatsCollector,
    RecordsActivationStatsCollector,
    SummaryActivationStatsCollector,
    collector_context,
    collector_files,
    collectors_context,
    create_activation_stats_collectors,
    module_activation_stats,
    save_collectors_data,
)
from distiller.analysis.collector_files import excel_sheet_names
from distiller.apps.activation_stats import PhaseCollectors
from distiller.errors import ConfigError, QuantizationError

# Before the ReLU; sample 0 / sample 1, channel 0 / channel 1, 2x2 maps.
PRE = torch.tensor(
    [
        [[[-1.0, 2.0], [0.0, 3.0]], [[-1.0, -2.0], [-3.0, 4.0]]],
        [[[1.0, 1.0], [1.0, -5.0]], [[-2.0, 0.0], [6.0, 2.0]]],
    ]
)
# After it:   s0 c0 [0 2 0 3] (2 zeros)   s0 c1 [0 0 0 4] (3 zeros)
#             s1 c0 [1 1 1 0] (1 zero)    s1 c1 [0 0 6 2] (2 zeros)


class Net(nn.Module):
    """identity -> relu -> conv(1x1, identity weights) -> relu6; a container in between."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.skip = nn.Identity()
        self.relu = nn.ReLU(inplace=inplace)
        self.block = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.ReLU6())
        with torch.no_grad():
            self.block[0].weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.relu(self.skip(x)))


def run(model: nn.Module, *batches: torch.Tensor) -> None:
    with torch.no_grad():
        for batch in batches:
            model(batch)


def test_apoz_of_a_relu_output_is_the_hand_computed_percentage() -> None:
    net = Net()
    collector = SummaryActivationStatsCollector(net, "apoz_channels")
    with collector:
        run(net, PRE)
    apoz = collector.value()["relu"]
    # channel 0: (2/4 + 1/4) / 2 = 37.5 %; channel 1: (3/4 + 2/4) / 2 = 62.5 %
    assert torch.allclose(apoz, torch.tensor([37.5, 62.5]))
    assert set(collector.value()) == {"relu", "block.1"}  # ReLU and ReLU6, not the conv nor the Identity


def test_sparsity_ofm_is_a_batch_size_weighted_mean_of_zero_percentages() -> None:
    net = Net()
    collector = SummaryActivationStatsCollector(net, "sparsity_ofm")
    with collector:
        run(net, PRE[:1], PRE[1:], PRE[1:])  # batches of one sample each: 5/8, 3/8, 3/8 zeros
    sparsity = collector.value()["relu"]
    assert sparsity.dim() == 0
    assert sparsity.item() == pytest.approx(100 * (5 + 3 + 3) / 24)
    collector.reset()
    with collector:
        run(net, PRE[:1], PRE)  # weights 1 and 2: (62.5 * 1 + 50 * 2) / 3
    assert collector.value()["relu"].item() == pytest.approx((62.5 + 2 * 50.0) / 3)


def test_l1_and_mean_channels_per_channel() -> None:
    net = Net()
    l1 = SummaryActivationStatsCollector(net, "l1_channels")
    mean = SummaryActivationStatsCollector(net, "mean_channels")
    with l1, mean:
        run(net, PRE)
    # sums per sample: c0: 5, 3; c1: 4, 8
    assert torch.allclose(l1.value()["relu"], torch.tensor([(5 + 3) / 2, (4 + 8) / 2]))
    assert torch.allclose(mean.value()["relu"], torch.tensor([(5 + 3) / 8, (4 + 8) / 8]))


def test_input_direction_sees_inputs_before_an_inplace_relu() -> None:
    net = Net(inplace=True)
    collector = SummaryActivationStatsCollector(net, "mean_channels", collector_direction="in", classes=[nn.ReLU])
    with collector:
        run(net, PRE.clone())
    # input means per channel: c0 (4 + -2) / 8, c1 (-2 + 6) / 8
    assert torch.allclose(collector.value()["relu"], torch.tensor([2 / 8, 4 / 8]))
    with pytest.raises(ConfigError, match="collector_direction"):
        SummaryActivationStatsCollector(net, "mean_channels", collector_direction="sideways")


def test_custom_summary_function_and_all_leaf_classes() -> None:
    net = Net()
    collector = SummaryActivationStatsCollector(net, "maximum", lambda t: t.amax(), classes=None)
    with collector:
        run(net, PRE)
    assert list(collector.value()) == ["relu", "block.0", "block.1"]  # leaves, Identity skipped
    assert collector.value()["relu"].item() == 6.0


def test_shared_relu_is_summarized_over_all_calls_and_records_refuse_it() -> None:
    relu = nn.ReLU()
    net = nn.Sequential(relu, nn.Conv2d(2, 2, 1), relu)
    collector = SummaryActivationStatsCollector(net, "sparsity_ofm")
    with collector:
        run(net, PRE)
    assert set(collector.value()) == {"0"}  # one module, both calls
    records = RecordsActivationStatsCollector(net, classes=[nn.ReLU])
    with records, pytest.raises(QuantizationError, match="more than once"):
        run(net, PRE)


def test_summary_dataframe_and_files_read_back(tmp_path) -> None:
    net = Net()
    apoz = SummaryActivationStatsCollector(net, "apoz_channels")
    sparsity = SummaryActivationStatsCollector(net, "sparsity_ofm")
    with apoz, sparsity:
        run(net, PRE)
    frame = apoz.to_dataframe()
    assert list(frame.index) == ["relu", "block.1"] and list(frame.columns) == [0, 1]
    assert frame.loc["relu", 1] == pytest.approx(62.5)
    assert list(sparsity.to_dataframe().columns) == ["sparsity_ofm"]

    xlsx = apoz.save(tmp_path / "apoz")  # no extension: .xlsx, as the original
    assert xlsx == tmp_path / "apoz.xlsx"
    book = pd.read_excel(xlsx, sheet_name=None, index_col=0)
    assert list(book) == ["apoz_channels"]
    assert book["apoz_channels"].loc["relu"].tolist() == pytest.approx([37.5, 62.5])
    csv = sparsity.save(tmp_path / "sparsity.csv")
    back = pd.read_csv(csv, index_col="module")
    assert back.loc["relu", "sparsity_ofm"] == pytest.approx(100 * 8 / 16)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file
    with pytest.raises(ConfigError, match=r"\.json"):
        apoz.save(tmp_path / "apoz.json")


def test_xlsx_without_openpyxl_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(collector_files, "openpyxl_available", lambda: False)
    collector = SummaryActivationStatsCollector(Net(), "sparsity_ofm")
    with pytest.raises(ConfigError, match="openpyxl"):
        collector.save(tmp_path / "s.xlsx")
    assert collector.save(tmp_path / "s.csv").exists()
    assert not (tmp_path / "s.xlsx").exists()


def test_excel_sheet_names_are_valid_and_unique() -> None:
    long = "features.module.denseblock4.denselayer16.conv2"
    names = excel_sheet_names([long, long + "x", "a/b", "A/B", "modules"], reserved=["modules"])
    assert all(len(s) <= 31 for s in names.values())
    assert len({s.casefold() for s in names.values()}) == 5
    assert names[long].endswith("denselayer16.conv2"[-15:])
    assert names["a/b"] == "a_b" and names["A/B"] == "A_B~2" and names["modules"] == "modules~2"


def test_collector_context_resets_starts_and_stops_even_on_errors() -> None:
    net = Net()
    collector = SummaryActivationStatsCollector(net, "sparsity_ofm")
    with collector_context(collector) as c:
        assert c is collector and collector.running
        run(net, PRE)
    assert not collector.running
    first = collector.value()["relu"].item()
    with collector_context(collector):  # reset at entry: the same batch gives the same value
        run(net, PRE)
    assert collector.value()["relu"].item() == pytest.approx(first)
    with pytest.raises(RuntimeError), collector_context(collector):
        raise RuntimeError("boom")
    assert not collector.running
    with collector_context(None) as nothing:
        assert nothing is None


def test_collectors_context_runs_a_dict_with_none_values() -> None:
    net = Net()
    collectors = {"a": SummaryActivationStatsCollector(net, "l1_channels"), "b": None}
    with collectors_context(collectors) as got:
        assert got is collectors and collectors["a"].running
        run(net, PRE)
    assert not collectors["a"].running and "relu" in collectors["a"].value()
    with collectors_context({}) as empty:
        assert empty == {}


def test_phase_collectors_do_not_change_what_pruners_read() -> None:
    net = Net()
    pruner_feed = SummaryActivationStatsCollector(net, "apoz_channels")
    with pruner_feed:
        run(net, PRE[:1])
    before = module_activation_stats(net.relu, "apoz_channels").clone()
    phases = create_activation_stats_collectors(net, "valid")
    assert set(phases) == {"train", "valid", "test"} and phases["train"] == {} and phases["test"] == {}
    assert set(phases["valid"]) == {"sparsity_ofm", "l1_channels", "apoz_channels", "mean_channels", "records"}
    assert all(isinstance(c, ActivationStatsCollector) for c in phases["valid"].values())
    with collectors_context(phases["valid"]):
        run(net, PRE)
    assert torch.equal(module_activation_stats(net.relu, "apoz_channels"), before)
    assert torch.allclose(phases["valid"]["apoz_channels"].value()["relu"], torch.tensor([37.5, 62.5]))
    assert list(phases["valid"]["records"].value()) == ["block.0"]  # Conv2d only
    with pytest.raises(ConfigError, match="valid"):
        create_activation_stats_collectors(net, "vaild")


def test_save_collectors_data_writes_xlsx_and_csv_per_stat(tmp_path) -> None:
    net = Net()
    collectors = create_activation_stats_collectors(net, "test")["test"]
    with collectors_context(collectors):
        run(net, PRE, PRE[:1])
    paths = save_collectors_data(collectors, tmp_path / "logs", "test")
    names = sorted(p.name for p in paths)
    stats = ["apoz_channels", "l1_channels", "mean_channels", "records", "sparsity_ofm"]
    assert names == sorted(f"test_{s}.{ext}" for s in stats for ext in ("xlsx", "csv"))
    assert all(p.exists() for p in paths)
    records = pd.read_csv(tmp_path / "logs" / "test_records.csv")
    assert records["batch"].tolist() == [0, 1] and set(records["module"]) == {"block.0"}
    book = pd.read_excel(tmp_path / "logs" / "test_records.xlsx", sheet_name=None)
    assert list(book) == ["modules", "block.0"]


def test_phase_collectors_measure_only_the_phases_asked_for(tmp_path) -> None:
    net = Net()
    acts = PhaseCollectors(net, ["train"])
    assert acts and acts.enabled("train") and not acts.enabled("valid")
    with acts.phase("valid") as collectors:
        assert collectors == {}
        run(net, PRE)
    assert acts.sparsity("valid") == {}
    with acts.phase("train"):
        run(net, PRE)
    assert acts.sparsity("train") == pytest.approx({"relu": 50.0, "block.1": 50.0})
    with acts.phase("train"):  # reset at each phase start
        run(net, PRE[:1])
    assert acts.sparsity("train")["relu"] == pytest.approx(62.5)
    saved = acts.save(tmp_path)
    assert {p.name for p in saved} >= {"train_sparsity_ofm.xlsx", "train_records.csv"}
    assert acts.save(tmp_path, "valid") == []
    assert PhaseCollectors(net, ["valid"], formats=["csv"]).formats == ("csv",)
    with pytest.raises(ConfigError, match="phase"):
        acts.sparsity("training")
    assert not PhaseCollectors(net, [])


def test_modules_replaced_between_phases_are_watched_at_the_next_start() -> None:
    net = Net()
    collector = SummaryActivationStatsCollector(net, "apoz_channels")
    with collector_context(collector):
        run(net, PRE)
    net.relu = nn.LeakyReLU(0.0)  # as a quantizer or thinning step would replace a module
    with collector_context(collector):
        run(net, PRE[:1])
    # sample 0 only: channel 0 has 2 zeros of 4, channel 1 has 3 of 4
    assert torch.allclose(collector.value()["relu"], torch.tensor([50.0, 75.0]))
    assert torch.equal(module_activation_stats(net.relu, "apoz_channels"), collector.value()["relu"])
