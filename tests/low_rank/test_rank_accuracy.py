"""Accuracy against rank on trained models: the acceptance of the low-rank package.

The MNIST test trains ``simplenet_mnist`` for one epoch on a subset of the real data and factorizes
``fc1`` (800 -> 500) at several ranks without fine-tuning; the digits test does the same on the
embedded 8x8 digits, so the behaviour is covered where the real data is absent.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.data import load_data
from distiller.low_rank import break_even_rank, rank_sweep
from distiller.models import create_model
from shared_data import MNIST_DIR, require


def _train(model: nn.Module, loaders, epochs: int, lr: float) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for epoch in range(epochs):
        loaders.set_epoch(epoch)
        for x, y in loaders.train:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()


def _tester(loader):
    @torch.no_grad()
    def test(model: nn.Module) -> tuple[float, float, float]:
        model.eval()
        top1 = top5 = 0
        loss, count = 0.0, 0
        for x, y in loader:
            out = model(x)
            loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            best = out.topk(5, dim=1).indices
            top1 += int((best[:, 0] == y).sum())
            top5 += int((best == y[:, None]).any(dim=1).sum())
            count += len(y)
        return 100.0 * top1 / count, 100.0 * top5 / count, loss / count

    return test


def _check_table(df, dense_top1: float, dense_loss: float) -> None:
    top1 = list(df["top1"])
    for lower, higher in zip(top1, top1[1:]):
        assert higher >= lower - 0.5, df.to_string()  # non-decreasing, up to evaluation noise
    full = df.iloc[-1]
    assert full["rank"] == df.attrs["full_rank"]
    assert abs(full["top1"] - dense_top1) <= 0.05 and full["loss"] == pytest.approx(dense_loss, rel=1e-3)


@pytest.mark.realdata
def test_fc1_rank_sweep_on_trained_mnist():
    data = require(MNIST_DIR)
    torch.manual_seed(0)
    loaders = load_data(
        "mnist", data, batch_size=64, validation_split=0.0, effective_train_size=6000, effective_test_size=2000
    )
    model = create_model("simplenet_mnist", "mnist")
    _train(model, loaders, epochs=1, lr=0.05)
    ranks = [5, 10, 20, 50, 100, 400, 500]
    df = rank_sweep(model, "fc1", ranks, _tester(loaders.test))
    dense = df.attrs["dense"]
    assert dense["top1"] >= 90.0, dense
    assert list(df["params"]) == [k * (800 + 500) + 500 for k in ranks]
    assert list(df["model_params"]) == [431_080 - 400_500 + k * 1300 + 500 for k in ranks]
    assert list(df["macs"]) == [k * 1300 for k in ranks]
    assert df.attrs["break_even_rank"] == break_even_rank(model.fc1) == 307
    _check_table(df, dense["top1"], dense["loss"])
    by_rank = df.set_index("rank")
    assert by_rank.loc[5, "top1"] + 2.0 < by_rank.loc[50, "top1"], df.to_string()  # rank 5 loses accuracy
    assert by_rank.loc[50, "top1"] >= dense["top1"] - 1.0, df.to_string()  # rank 50 (1/6 of fc1) keeps it
    assert list(df["energy"]) == sorted(df["energy"]) and df["energy"].iloc[-1] == pytest.approx(1.0)


def test_fc_rank_sweep_on_trained_digits():
    torch.manual_seed(0)
    loaders = load_data("digits", batch_size=64, validation_split=0.0)
    model = create_model("simplenet_digits", "digits")
    _train(model, loaders, epochs=6, lr=0.05)
    df = rank_sweep(model, "fc", [1, 2, 4, 6, 10], _tester(loaders.test))
    dense = df.attrs["dense"]
    assert dense["top1"] >= 90.0, dense
    assert list(df["params"]) == [k * (512 + 10) + 10 for k in (1, 2, 4, 6, 10)]
    assert df.attrs["break_even_rank"] == 512 * 10 // 522
    _check_table(df, dense["top1"], dense["loss"])
    assert df["top1"].iloc[0] + 10.0 < dense["top1"], df.to_string()  # rank 1 of 10 classes cannot separate them
