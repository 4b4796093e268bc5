#!/usr/bin/env python3
"""A small LSTM classifier, ``lstm_digits``, and a ``distiller`` command that knows it.

Distiller's model zoo has no recurrent image classifier, and the word-language-model sample app
(the original's home of RNN pruning) is not ported yet. This file registers a two-layer LSTM that
reads an 8x8 digit row by row (8 time steps of 8 pixels) and classifies the last hidden state,
so RNN pruning schedules can be tried in seconds on the embedded digits data::

    python examples/baidu-rnn-pruning/lstm_digits.py classify -a lstm_digits --dataset digits --epochs 12 \
        --lr 0.1 -b 64 -j 0 --deterministic --compress examples/baidu-rnn-pruning/lstm_digits.baidu_rnn.yaml

Everything after the script name is a ``distiller`` command line (``validate``, ``classify``, ...).
Importing the module registers the model too (``import lstm_digits``), which is how a user adds
any architecture of their own: :func:`distiller.models.register_model`.

Parameters: ``rnn.weight_ih_l0`` (256x8), ``rnn.weight_hh_l0`` (256x64), ``rnn.weight_ih_l1``
(256x64), ``rnn.weight_hh_l1`` (256x64), their biases, and ``fc.weight`` (10x64).
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from distiller.models import MODELS, register_model

ARCH = "lstm_digits"


class LSTMDigits(nn.Module):
    """Two stacked LSTM layers over the rows of an 8x8 image, then a linear classifier."""

    def __init__(self, num_classes: int = 10, hidden_size: int = 64, num_layers: int = 2) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_size=8, hidden_size=hidden_size, num_layers=num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.flatten(1, 2)  # (batch, 1, 8, 8) -> (batch, 8 rows, 8 pixels)
        out, _ = self.rnn(rows)
        return self.fc(out[:, -1])


def register() -> None:
    """Register ``lstm_digits`` (idempotent)."""
    if ARCH not in MODELS:
        register_model(ARCH, "digits", LSTMDigits)


def classify(argv: list[str]) -> int:
    """``distiller classify ARGV`` with ``lstm_digits`` registered."""
    from distiller.cli.main import main

    return main(["classify", *argv])


register()

if __name__ == "__main__":
    from distiller.cli.main import main

    sys.exit(main())
