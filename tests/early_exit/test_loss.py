"""The early-exit training loss, by hand, and the checks of its weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distiller.early_exit import EarlyExitCriterion, check_loss_weights, earlyexit_loss, final_output
from distiller.errors import ConfigError


def test_loss_is_the_weighted_sum_of_the_exits_cross_entropies() -> None:
    generator = torch.Generator().manual_seed(0)
    outputs = [torch.randn(5, 4, generator=generator) for _ in range(3)]
    target = torch.tensor([0, 1, 2, 3, 0])
    ce = [F.cross_entropy(o, target).item() for o in outputs]
    expected = 0.1 * ce[0] + 0.3 * ce[1] + 0.6 * ce[2]
    assert math.isclose(earlyexit_loss(outputs, target, [0.1, 0.3]).item(), expected, rel_tol=1e-6)
    assert math.isclose(EarlyExitCriterion([0.1, 0.3])(outputs, target).item(), expected, rel_tol=1e-6)


def test_a_single_hand_computed_case() -> None:
    # exit: logits [0, 0] for label 0 -> CE ln 2; final: [ln 3, 0] -> p = 3/4 -> CE ln(4/3)
    outputs = [torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])]
    loss = earlyexit_loss(outputs, torch.tensor([0]), [0.25]).item()
    assert math.isclose(loss, 0.25 * math.log(2) + 0.75 * math.log(4 / 3), rel_tol=1e-6)


@pytest.mark.parametrize(
    ("weights", "num_exits", "message"),
    [
        ([], None, "empty"),
        ([0.5, 0.5], 2, "sum to less than 1"),
        ([0.7, 0.4], None, "sum to less than 1"),
        ([-0.1], 1, ">= 0"),
        ([0.3], 2, "has 1 value.*2 early exit"),
    ],
)
def test_bad_weights_name_the_flag(weights, num_exits, message: str) -> None:
    with pytest.raises(ConfigError, match=f"--earlyexit_lossweights.*{message}|{message}"):
        check_loss_weights(weights, num_exits)


def test_weight_count_must_match_the_exits() -> None:
    outputs = [torch.zeros(1, 3)] * 3
    with pytest.raises(ConfigError, match="2 early exit"):
        earlyexit_loss(outputs, torch.tensor([0]), [0.3])


def test_a_single_tensor_output_is_not_an_early_exit_model() -> None:
    with pytest.raises(ConfigError, match="early exits"):
        earlyexit_loss(torch.zeros(1, 3), torch.tensor([0]), [0.3])


def test_final_output() -> None:
    a, b = torch.zeros(1, 2), torch.ones(1, 2)
    assert final_output([a, b]) is b and final_output(a) is a
