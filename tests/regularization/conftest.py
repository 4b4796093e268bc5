"""Small models with known weights for the regularizer tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """A conv (3 filters x 2 channels x 2 x 2), a linear (3 x 4) and a 1-D BatchNorm scale."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, kernel_size=2, bias=False)
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)


@pytest.fixture
def net() -> TinyNet:
    """Double precision, deterministic weights with mixed signs and distinct magnitudes."""
    torch.manual_seed(0)
    model = TinyNet().double()
    with torch.no_grad():
        model.conv.weight.copy_(torch.randn(3, 2, 2, 2, dtype=torch.float64))
        model.fc.weight.copy_(torch.randn(3, 4, dtype=torch.float64))
        model.bn.weight.copy_(torch.tensor([0.5, -0.01, 2.0], dtype=torch.float64))
    return model
