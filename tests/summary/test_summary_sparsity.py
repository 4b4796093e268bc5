"""Sparsity summary: the original's columns and total row, the exact total line, CSV, masks table."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from distiller.sparsity import MaskSet
from distiller.summary import (
    SPARSITY_COLUMNS,
    masks_sparsity_summary,
    render_masks_sparsity_summary,
    render_sparsity_summary,
    sparsity_summary,
    total_sparsity,
    write_csv,
)
from shared_data import CHECKPOINTS, require

ORIGINAL_COLUMNS = [
    "Name",
    "Shape",
    "NNZ (dense)",
    "NNZ (sparse)",
    "Cols (%)",
    "Rows (%)",
    "Ch (%)",
    "2D (%)",
    "3D (%)",
    "Fine (%)",
    "Std",
    "Mean",
    "Abs-Mean",
]


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    with torch.no_grad():
        model[0].weight[1] = 0  # one filter: 27 of 108 conv weights
        model[3].weight[:, :8] = 0  # eight input features: 80 of 640 fc weights
    return model


def test_columns_rows_and_values():
    df = sparsity_summary(_model())
    assert list(df.columns) == ORIGINAL_COLUMNS == list(SPARSITY_COLUMNS)
    assert df["Name"].tolist() == ["0.weight", "3.weight", "Total sparsity:"]
    conv, fc, total = (df.iloc[i] for i in range(3))
    assert conv["Shape"] == "(4, 3, 3, 3)"
    assert (conv["NNZ (dense)"], conv["NNZ (sparse)"]) == (108, 81)
    assert conv["3D (%)"] == 25.0 and conv["Fine (%)"] == 25.0 and conv["2D (%)"] == 25.0
    assert conv["Cols (%)"] == 0 and conv["Rows (%)"] == 0
    # 2-D weights use the original's transposed convention: zero stored columns are "Rows".
    assert fc["Rows (%)"] == pytest.approx(100 * 8 / 64) and fc["Cols (%)"] == 0
    assert fc["Ch (%)"] == 0 and fc["3D (%)"] == 0
    w = _model()[3].weight.detach()
    assert fc["Std"] == pytest.approx(w.std().item())
    assert fc["Mean"] == pytest.approx(w.mean().item())
    assert fc["Abs-Mean"] == pytest.approx(w.abs().mean().item())
    assert total["Shape"] == "-"
    assert (total["NNZ (dense)"], total["NNZ (sparse)"]) == (748, 748 - 27 - 80)
    assert total["Fine (%)"] == pytest.approx(100 * 107 / 748)
    assert [total[c] for c in ORIGINAL_COLUMNS[4:9] + ORIGINAL_COLUMNS[10:]] == [0] * 8
    assert total_sparsity(df) == pytest.approx(100 * 107 / 748)


def test_canonical_names_for_wrapped_models():
    df = sparsity_summary(nn.DataParallel(_model()))
    assert df["Name"].tolist()[:2] == ["0.weight", "3.weight"]


def test_render_ends_with_the_total_line():
    text = render_sparsity_summary(sparsity_summary(_model()), title="Parameters:")
    lines = text.splitlines()
    assert lines[0] == "Parameters:"
    assert lines[-1] == f"Total sparsity: {100 * 107 / 748:.2f}"
    assert "| Name" in text and "NNZ (sparse)" in text


def test_write_csv_is_atomic_and_readable(tmp_path):
    df = sparsity_summary(_model())
    path = write_csv(df, tmp_path / "sub" / "weights_sparsity.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == ORIGINAL_COLUMNS
    assert back["Name"].tolist() == df["Name"].tolist()
    assert [p.name for p in path.parent.iterdir()] == ["weights_sparsity.csv"]  # no temporary left


def test_masks_sparsity_summary():
    model = _model()
    masks = MaskSet.for_model(model)
    masks["3.weight"].mask = torch.zeros(10, 64)
    masks["3.weight"].mask[:, :32] = 1
    df = masks_sparsity_summary(model, masks)
    assert list(df.columns) == ["Name", "Fine (%)"]
    assert df["Name"].tolist() == ["0.weight", "3.weight", "Total sparsity:"]
    assert df["Fine (%)"].tolist()[:2] == [0.0, 50.0]  # masks, not weights: the conv has no mask
    assert total_sparsity(df) == pytest.approx(100 * 320 / 748)
    # Also from a plain {name: mask} dict with wrapped names, and from a scheduler-like object.
    plain = masks_sparsity_summary(model, {"module.3.weight": masks["3.weight"].mask})
    assert total_sparsity(plain) == total_sparsity(df)

    class Sched:
        zeros_mask_dict = masks

    assert render_masks_sparsity_summary(model, Sched()).splitlines()[-1] == f"Total sparsity: {100 * 320 / 748:.2f}"


@pytest.mark.realdata
def test_total_sparsity_of_the_original_channel_regularized_checkpoint():
    """Reference: the original's resnet20 ``checkpoint_trained_ch_regularized_dense`` is 8.88% sparse."""
    path = require(CHECKPOINTS / "checkpoint_trained_ch_regularized_dense.pth.tar")
    from distiller.checkpoint import load_checkpoint
    from distiller.models import create_model

    model = create_model("resnet20_cifar", "cifar10")
    load_checkpoint(path, model)
    df = sparsity_summary(model)
    assert list(df.columns) == ORIGINAL_COLUMNS
    assert len(df) == 23  # 21 conv weights, the fc weight, the total row
    assert render_sparsity_summary(df).splitlines()[-1] == "Total sparsity: 8.88"
    total = df.iloc[-1]
    assert (total["NNZ (dense)"], total["NNZ (sparse)"]) == (270896, 246848)
    row = df.set_index("Name").loc["layer1.1.conv2.weight"]
    assert row["Ch (%)"] == 50.0 and row["2D (%)"] == 50.0 and row["3D (%)"] == 0.0
