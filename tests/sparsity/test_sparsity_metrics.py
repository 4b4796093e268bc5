"""Sparsity metrics: the original's ``tests/test_basic.py`` values, structure metrics, model stats."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.analysis.activations import activation_channels_apoz, activation_channels_l1, activation_channels_means
from distiller.sparsity import metrics as M


def test_basic_sparsity_values():
    zeros = torch.zeros(2, 3, 5, 6)
    assert M.sparsity(zeros) == 1.0
    assert M.sparsity_3D(zeros) == 1.0
    assert M.density_3D(zeros) == 0.0
    assert M.sparsity(torch.ones(12, 43, 4, 6)) == 0.0

    x = torch.tensor([[1.0, 2.0, 0, 4.0, 0], [1.0, 2.0, 0, 4.0, 0]])
    assert M.density(x) == 0.6
    assert M.density_cols(x, transposed=False) == 0.6
    assert M.sparsity_rows(x, transposed=False) == 0

    x = torch.tensor([[0.0, 0.0, 0], [1.0, 4.0, 0], [1.0, 2.0, 0], [0.0, 0.0, 0]])
    assert M.density(x) == 4 / 12
    assert M.sparsity_rows(x, transposed=False) == 0.5
    assert M.sparsity_cols(x, transposed=False) == pytest.approx(1 / 3)
    assert M.sparsity_rows(x) == pytest.approx(1 / 3)  # transposed: stored columns
    assert M.sparsity_cols(x) == 0.5  # transposed: stored rows


def test_activation_channel_statistics():
    x = torch.tensor(
        [
            [[[1.0, 0, 0], [0, 2, 0], [0, 0, 3]], [[1, 0, 2], [0, 3, 0], [4, 0, 5]]],
            [[[4.0, 0, 0], [0, 5, 0], [0, 0, 6]], [[0, 6, 0], [7, 0, 8], [0, 9, 0]]],
        ]
    )
    assert torch.equal(activation_channels_l1(x), torch.tensor([21 / 2, 45 / 2]))
    assert torch.equal(activation_channels_apoz(x), torch.tensor([100 * (6 + 6) / (9 + 9), 100 * (4 + 5) / (9 + 9)]))
    assert torch.equal(activation_channels_means(x), torch.tensor([21 / 18, 45 / 18]))
    fc = torch.tensor([[0.0, 2.0], [0.0, -4.0]])  # 2-D: each feature is a channel
    assert activation_channels_apoz(fc).tolist() == [100.0, 0.0]
    assert activation_channels_l1(fc).tolist() == [0.0, 3.0]


def test_structure_sparsity_of_conv_weights():
    w = torch.ones(4, 6, 3, 3)
    w[1] = 0  # one filter
    w[:, 2] = 0  # one channel
    w[0, 0] = 0  # one more kernel
    assert M.sparsity_3D(w) == 1 - 3 / 4
    assert M.sparsity_ch(w) == 1 - 5 / 6
    assert M.sparsity_2D(w) == pytest.approx((6 + 3 + 1) / 24)
    assert M.non_zero_channels(w).flatten().tolist() == [0, 1, 3, 4, 5]
    assert M.density_ch(w) == pytest.approx(5 / 6)
    # Ranks a metric does not apply to give 0.
    fc = torch.zeros(3, 4)
    assert M.sparsity_3D(fc) == 0 and M.sparsity_ch(fc) == 0 and M.sparsity_cols(w) == 0
    assert M.sparsity_2D(fc) == 1.0  # 2-D: rows


def test_sparsity_blocks():
    w = torch.ones(4, 4, 3, 3)
    w[0:2, 0:2] = 0
    assert M.sparsity_blocks(w, (2, 2, 1, 1)) == pytest.approx(1 / 4)
    assert M.sparsity_blocks(w, (1, 1, 3, 3)) == pytest.approx(4 / 16)
    assert M.sparsity_blocks(w, (2, 1, 1, 1)) == pytest.approx(18 / 72)
    assert M.sparsity_blocks(w, (4, 4, 3, 3)) == 0
    fc = torch.ones(4, 8)
    fc[:, :4] = 0
    assert M.sparsity_blocks(fc, (4, 4)) == 0.5


def test_model_statistics():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight.zero_()  # 72 elements
        model[3].weight.fill_(1.0)  # 12 elements
    # Counted: the 4-D conv weight and the 2-D fc weight (biases and BN tensors are 1-D).
    assert M.model_numel(model) == 72 + 12
    sparsity, total, nnz = M.model_params_stats(model)
    assert (total, nnz) == (84, 12)
    assert sparsity == pytest.approx(72 / 84 * 100)
    assert M.model_sparsity(model) == sparsity
    assert M.model_params_size(model) == 12
    assert M.model_numel(model, param_dims=[1]) == 4 + 4 + 4 + 3  # conv bias, bn weight and bias, fc bias
    assert [n for n, _ in M.model_params(model, param_dims=[1], param_types=["bias"])] == ["0.bias", "1.bias", "3.bias"]
    with pytest.raises(ValueError, match="no"):
        M.model_params_stats(model, param_dims=[3])
