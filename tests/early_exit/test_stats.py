"""The exit decision and the simulated statistics, on hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch

from distiller.early_exit import ExitSimulation, first_confident_exit, format_stats, softmax_entropy
from distiller.errors import ConfigError

CONFIDENT = [9.0, 0.0, 0.0]  # softmax ~ (0.9998, ...): entropy ~ 0.0025 nats
UNSURE = [0.0, 0.0, 0.0]  # uniform: entropy ln 3 = 1.0986 nats


def _logits(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_entropy_in_nats() -> None:
    entropy = softmax_entropy(_logits(UNSURE, [100.0, 0.0, 0.0]))
    assert math.isclose(entropy[0].item(), math.log(3), rel_tol=1e-6)
    assert entropy[1].item() == pytest.approx(0.0, abs=1e-6)


def test_first_confident_exit_by_entropy() -> None:
    exit0 = _logits(CONFIDENT, UNSURE, UNSURE, CONFIDENT)
    exit1 = _logits(UNSURE, CONFIDENT, UNSURE, CONFIDENT)
    final = _logits(UNSURE, UNSURE, UNSURE, UNSURE)
    taken = first_confident_exit([exit0, exit1, final], [0.5, 0.5])
    assert taken.tolist() == [0, 1, 2, 0]  # the earliest confident exit wins
    assert first_confident_exit([exit0, exit1], [0.0, 0.0]).tolist() == [2, 2, 2, 2]  # 0: nothing exits
    assert first_confident_exit([exit0, exit1], [10.0, 0.0]).tolist() == [0, 0, 0, 0]  # > ln C: all exit


def test_ce_rule_uses_the_label() -> None:
    exit0 = _logits(CONFIDENT, CONFIDENT)  # confident in class 0
    target = torch.tensor([0, 1])  # right for the first sample, wrong for the second
    assert first_confident_exit([exit0], [0.5], "ce", target).tolist() == [0, 1]
    assert first_confident_exit([exit0], [0.5], "entropy").tolist() == [0, 0]
    with pytest.raises(ConfigError, match="needs labels"):
        first_confident_exit([exit0], [0.5], "ce")
    with pytest.raises(ConfigError, match="--earlyexit-rule 'margin'"):
        first_confident_exit([exit0], [0.5], "margin")


def _batch():
    """Six samples, three classes; exit 0 is confident on samples 0-2, right on 0 and 1."""
    exit0 = _logits(CONFIDENT, CONFIDENT, CONFIDENT, UNSURE, UNSURE, UNSURE)
    final = _logits([0, 0, 5.0], [0, 5.0, 0], [5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [0, 5.0, 0])
    target = torch.tensor([0, 0, 1, 1, 2, 0])
    return [exit0, final], target


def test_simulation_percentages_accuracies_and_totals() -> None:
    outputs, target = _batch()
    simulation = ExitSimulation([0.5])
    simulation.update([o[:4] for o in outputs], target[:4])  # two minibatches
    simulation.update([o[4:] for o in outputs], target[4:])
    stats = simulation.result(exit_macs=[100, 400], backbone_macs=390)
    first, final = stats.exits
    assert (first.taken, final.taken) == (3, 3)
    assert first.percent == pytest.approx(50.0) and final.percent == pytest.approx(50.0)
    assert first.top1 == pytest.approx(200 / 3)  # samples 0 and 1 right, 2 wrong
    assert first.top5 == pytest.approx(100.0)  # top-5 of 3 classes: always right
    assert final.top1 == pytest.approx(200 / 3)  # samples 3 and 4 right, 5 wrong
    # the totals are the per-exit accuracies weighted by each exit's share
    assert stats.top1 == pytest.approx(0.5 * first.top1 + 0.5 * final.top1)
    assert stats.num_samples == 6
    assert stats.average_macs == pytest.approx((3 * 100 + 3 * 400) / 6)
    ce_final = torch.nn.functional.cross_entropy(outputs[1], target).item()
    assert stats.final_loss == pytest.approx(ce_final, rel=1e-5)


def test_simulation_with_the_ce_rule() -> None:
    outputs, target = _batch()
    simulation = ExitSimulation([0.5], rule="ce")
    simulation.update(outputs, target)
    first, final = simulation.result().exits
    assert (first.taken, first.top1) == (2, pytest.approx(100.0))  # only the correct confident samples exit
    assert final.taken == 4


def test_report_lines_come_in_the_original_style() -> None:
    outputs, target = _batch()
    simulation = ExitSimulation([0.5])
    simulation.update(outputs, target)
    lines = format_stats(simulation.result(exit_macs=[100, 400], backbone_macs=390))
    assert lines[1] == "Exit 0: Top1 66.667   Top5 100.000   taken 50.000% (3)   MACs 100"
    assert lines[2].startswith("Exit 1 (final): Top1 66.667")
    assert lines[3] == "Totals with early exits: Top1 66.667   Top5 100.000"
    assert lines[4] == "Average MACs/sample: 250 (64.1% of the model without exits: 390)"
