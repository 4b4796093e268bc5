"""Compute summary: the original's columns, the published ResNet-20 table (reference §5.3), MAC totals."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from distiller.errors import GraphError
from distiller.models import create_model
from distiller.summary import COMPUTE_COLUMNS, compute_summary, render_compute_summary, total_macs

# docs-src/docs/usage.md of the original (ResNet-20 CIFAR, batch 1), with the DataParallel
# ``module.`` prefix removed: names are canonical here.
RESNET20_TABLE = """
conv1                 | Conv2d | k=(3, 3) | (1, 3, 32, 32)  | 3072  | (1, 16, 32, 32) | 16384 | 432   | 442368
layer1.0.conv1        | Conv2d | k=(3, 3) | (1, 16, 32, 32) | 16384 | (1, 16, 32, 32) | 16384 | 2304  | 2359296
layer1.0.conv2        | Conv2d | k=(3, 3) | (1, 16, 32, 32) | 16384 | (1, 16, 32, 32) | 16384 | 2304  | 2359296
layer1.1.conv1        | Conv2d | k=(3, 3) | (1, 16, 32, 32) | 16384 | (1, 16, 32, 32) | 16384 | 2304  | 2359296
layer1.1.conv2        | Conv2d | k=(3, 3) | (1, 16, 32, 32) | 16384 | (1, 16, 32, 32) | 16384 | 2304  | 2359296
layer1.2.conv1        | Conv2d | k=(3, 3) | (1, 16, 32, 32) | 16384 | (1, 16, 32, 32) | 16384 | 2304  | 2359296
layer1.2.conv2        | Conv2d | k=(3, 3) | (1, 16, 32, 32) | 16384 | (1, 16, 32, 32) | 16384 | 2304  | 2359296
layer2.0.conv1        | Conv2d | k=(3, 3) | (1, 16, 32, 32) | 16384 | (1, 32, 16, 16) | 8192  | 4608  | 1179648
layer2.0.conv2        | Conv2d | k=(3, 3) | (1, 32, 16, 16) | 8192  | (1, 32, 16, 16) | 8192  | 9216  | 2359296
layer2.0.downsample.0 | Conv2d | k=(1, 1) | (1, 16, 32, 32) | 16384 | (1, 32, 16, 16) | 8192  | 512   | 131072
layer2.1.conv1        | Conv2d | k=(3, 3) | (1, 32, 16, 16) | 8192  | (1, 32, 16, 16) | 8192  | 9216  | 2359296
layer2.1.conv2        | Conv2d | k=(3, 3) | (1, 32, 16, 16) | 8192  | (1, 32, 16, 16) | 8192  | 9216  | 2359296
layer2.2.conv1        | Conv2d | k=(3, 3) | (1, 32, 16, 16) | 8192  | (1, 32, 16, 16) | 8192  | 9216  | 2359296
layer2.2.conv2        | Conv2d | k=(3, 3) | (1, 32, 16, 16) | 8192  | (1, 32, 16, 16) | 8192  | 9216  | 2359296
layer3.0.conv1        | Conv2d | k=(3, 3) | (1, 32, 16, 16) | 8192  | (1, 64, 8, 8)   | 4096  | 18432 | 1179648
layer3.0.conv2        | Conv2d | k=(3, 3) | (1, 64, 8, 8)   | 4096  | (1, 64, 8, 8)   | 4096  | 36864 | 2359296
layer3.0.downsample.0 | Conv2d | k=(1, 1) | (1, 32, 16, 16) | 8192  | (1, 64, 8, 8)   | 4096  | 2048  | 131072
layer3.1.conv1        | Conv2d | k=(3, 3) | (1, 64, 8, 8)   | 4096  | (1, 64, 8, 8)   | 4096  | 36864 | 2359296
layer3.1.conv2        | Conv2d | k=(3, 3) | (1, 64, 8, 8)   | 4096  | (1, 64, 8, 8)   | 4096  | 36864 | 2359296
layer3.2.conv1        | Conv2d | k=(3, 3) | (1, 64, 8, 8)   | 4096  | (1, 64, 8, 8)   | 4096  | 36864 | 2359296
layer3.2.conv2        | Conv2d | k=(3, 3) | (1, 64, 8, 8)   | 4096  | (1, 64, 8, 8)   | 4096  | 36864 | 2359296
fc                    | Linear |          | (1, 64)         | 64    | (1, 10)         | 10    | 640   | 640
"""


def _published_rows() -> list[list]:
    rows = []
    for line in RESNET20_TABLE.strip().splitlines():
        cells = [c.strip() for c in line.split("|")]
        rows.append([cells[0], cells[1], cells[2], cells[3], int(cells[4]), cells[5], *map(int, cells[6:])])
    return rows


def _as_text(df: pd.DataFrame) -> list[list]:
    """Rows with shapes spelled as the published table spells them."""
    return [[*row[:3], str(row[3]), row[4], str(row[5]), *row[6:]] for row in df.values.tolist()]


@pytest.fixture(scope="module")
def resnet20_table() -> pd.DataFrame:
    return compute_summary(create_model("resnet20_cifar", "cifar10"))


def test_resnet20_matches_the_published_table(resnet20_table):
    assert list(resnet20_table.columns) == list(COMPUTE_COLUMNS) == [
        "Name", "Type", "Attrs", "IFM", "IFM volume", "OFM", "OFM volume", "Weights volume", "MACs",
    ]  # fmt: skip
    assert _as_text(resnet20_table) == _published_rows()
    assert resnet20_table["IFM"].iloc[0] == (1, 3, 32, 32)  # shapes are tuples, not strings
    assert total_macs(resnet20_table) == 40_813_184 == resnet20_table.attrs["total_macs"]


def test_render_ends_with_the_exact_total_line(resnet20_table):
    text = render_compute_summary(resnet20_table, title="Compute:")
    lines = text.splitlines()
    assert lines[0] == "Compute:" and lines[-1] == "Total MACs: 40,813,184"
    assert "layer2.0.downsample.0" in text and "k=(1, 1)" in text and "(1, 16, 32, 32)" in text


def test_simplenet_macs():
    df = compute_summary(create_model("simplenet_cifar", "cifar10"))
    assert df["MACs"].tolist() == [352800, 240000, 48000, 10080, 840]
    assert df["Type"].tolist() == ["Conv2d", "Conv2d", "Linear", "Linear", "Linear"]
    assert df["Attrs"].tolist() == ["k=(5, 5)", "k=(5, 5)", "", "", ""]


def test_the_table_describes_one_sample_whatever_the_example_batch(resnet20_table):
    model = create_model("resnet20_cifar", "cifar10")
    batch = compute_summary(model, example_input=torch.randn(8, 3, 32, 32))
    pd.testing.assert_frame_equal(batch, resnet20_table)
    by_dataset = compute_summary(model, dataset="cifar10")
    pd.testing.assert_frame_equal(by_dataset, resnet20_table)


class _Mixed(nn.Module):
    """1-D, transposed and grouped convolutions, and a Linear layer called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(2, 4, 3, padding=1)
        self.grouped = nn.Conv1d(4, 4, 3, padding=1, groups=2, bias=False)
        self.up = nn.ConvTranspose1d(4, 2, 2, stride=2)
        self.fc = nn.Linear(32, 32)

    def forward(self, x):
        x = self.up(self.grouped(self.conv1d(x))).flatten(1)
        return self.fc(self.fc(x))


def test_conv_kinds_and_repeated_calls():
    df = compute_summary(_Mixed(), example_input=torch.randn(3, 2, 8))
    assert df["Name"].tolist() == ["conv1d", "grouped", "up", "fc", "fc"]
    assert df["Type"].tolist() == ["Conv1d", "Conv1d", "ConvTranspose1d", "Linear", "Linear"]
    assert df["Attrs"].tolist() == ["k=(3,)", "k=(3,)", "k=(2,)", "", ""]
    assert df["OFM"].tolist() == [(1, 4, 8), (1, 4, 8), (1, 2, 16), (1, 32), (1, 32)]
    assert df["Weights volume"].tolist() == [24, 24, 16, 1024, 1024]
    # conv: vol(OFM) * C_in/groups * k; transposed: vol(IFM) * k * C_out/groups; Linear: out * in
    assert df["MACs"].tolist() == [32 * 2 * 3, 32 * 2 * 3, 32 * 2 * 2, 1024, 1024]


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it; the graph falls back to module hooks."""

    input_shape = (3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 1e9:
            x = x * 0
        return self.fc(x.flatten(1))


def test_untraceable_model_is_summarized_from_hooks():
    df = compute_summary(_Branchy())
    assert df["Name"].tolist() == ["conv", "fc"]
    assert df["MACs"].tolist() == [4 * 6 * 6 * 3 * 9, 144 * 2]


def test_unknown_input_shape_is_a_user_error():
    with pytest.raises(GraphError, match="input shape"):
        compute_summary(nn.Sequential(nn.Linear(3, 2)))


def test_model_without_layers_gives_an_empty_table():
    df = compute_summary(nn.Sequential(nn.ReLU()), example_input=torch.randn(1, 3))
    assert list(df.columns) == list(COMPUTE_COLUMNS) and len(df) == 0
    assert render_compute_summary(df).splitlines()[-1] == "Total MACs: 0"
