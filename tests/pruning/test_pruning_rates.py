"""Rate schedules: AGP with the original's epoch semantics, its step variant, the Baidu ramp, random levels."""

from __future__ import annotations

import pytest
import torch
from pruning_helpers import compute_masks, conv_model, window_meta

from distiller.errors import ConfigError, ScheduleError
from distiller.pruning import build_pruner
from distiller.pruning.rates import (
    AgpRate,
    PerParamRate,
    RandomRangeRate,
    Window,
    agp_target,
    baidu_threshold,
    linear_growth,
    random_level,
)


def original_agp(initial: float, final: float, current: int, start: int, end: int, freq: int) -> float:
    """The original's AutomatedGradualPrunerBase.compute_target_sparsity, verbatim in arithmetic."""
    span = ((end - start - 1) // freq) * freq
    assert span > 0
    return final + (initial - final) * (1.0 - ((current - start) / span)) ** 3


@pytest.mark.parametrize(("start", "end", "freq"), [(0, 30, 2), (0, 30, 1), (5, 26, 3), (2, 100, 7)])
def test_agp_matches_the_original_formula_at_every_pruning_epoch(start: int, end: int, freq: int) -> None:
    for epoch in range(start, end, freq):
        assert agp_target(0.05, 0.7, epoch, start, end, freq) == pytest.approx(
            original_agp(0.05, 0.7, epoch, start, end, freq), abs=1e-12
        )


def test_agp_window_0_30_2_prunes_at_even_epochs_and_reaches_final_at_28() -> None:
    epochs = list(range(0, 30, 2))
    assert epochs[-1] == 28
    targets = [agp_target(0.1, 0.5, e, 0, 30, 2) for e in epochs]
    assert targets[0] == pytest.approx(0.1)
    assert targets[-1] == pytest.approx(0.5)
    assert all(a < b for a, b in zip(targets, targets[1:]))  # strictly increasing
    # The cubic front-loads pruning: the first half of the window removes most of it.
    assert agp_target(0.1, 0.5, 14, 0, 30, 2) > 0.1 + 0.8 * 0.4


def test_agp_outside_the_window_is_clamped_and_bad_windows_raise() -> None:
    assert agp_target(0.1, 0.5, 40, 0, 30, 2) == pytest.approx(0.5)
    assert agp_target(0.1, 0.5, -3, 0, 30, 2) == pytest.approx(0.1)
    with pytest.raises(ScheduleError, match="span"):
        agp_target(0.1, 0.5, 0, 0, 2, 2)  # one pruning point only


def test_agp_rate_reads_epoch_and_step_windows() -> None:
    rate = AgpRate(0.0, 0.8)
    epoch_meta = {"current_epoch": 4, "starting_epoch": 0, "ending_epoch": 10, "frequency": 2}
    assert rate("w", epoch_meta) == pytest.approx(agp_target(0.0, 0.8, 4, 0, 10, 2))
    # Per step (the paper's setting): the same formula over steps, taking precedence over epochs.
    step_meta = {**epoch_meta, "current_step": 250, "starting_step": 0, "ending_step": 1001, "step_frequency": 50}
    assert rate("w", step_meta) == pytest.approx(agp_target(0.0, 0.8, 250, 0, 1001, 50))
    assert rate.step(4, 0, 10, 2) == rate("w", epoch_meta)  # the original's AgpPruningRate.step
    assert Window.from_meta(step_meta).unit == "step"


def test_agp_rate_validates_its_levels() -> None:
    with pytest.raises(ConfigError, match="greater"):
        AgpRate(0.5, 0.5)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        AgpRate(0.1, 1.5)
    with pytest.raises(ScheduleError, match="current_epoch"):
        AgpRate(0.1, 0.5)("w", {"model": None})


def original_baidu(q: float, offset: int, mult: float, current: int, start: int, end: int, freq: int) -> float:
    ramp = offset + start
    start_slope = (2 * q * freq) / (2 * (ramp - start) + 3 * (end - ramp))
    ramp_slope = start_slope * mult
    if current < ramp:
        return start_slope * (current - start + 1) / freq
    return (start_slope * (ramp - start + 1) + ramp_slope * (current - ramp + 1)) / freq


def test_baidu_threshold_matches_the_original_ramp() -> None:
    for epoch in range(4, 21, 3):
        assert baidu_threshold(0.17, 3, 2, epoch, 4, 21, 3) == pytest.approx(
            original_baidu(0.17, 3, 2, epoch, 4, 21, 3)
        )
    # The slope steepens at the ramp point.
    before = baidu_threshold(0.1, 5, 3, 4, 0, 20, 1) - baidu_threshold(0.1, 5, 3, 3, 0, 20, 1)
    after = baidu_threshold(0.1, 5, 3, 7, 0, 20, 1) - baidu_threshold(0.1, 5, 3, 6, 0, 20, 1)
    assert after == pytest.approx(3 * before)


def test_random_level_stays_in_range_and_follows_the_seed() -> None:
    draws = [random_level(0.1, 0.3, torch.Generator().manual_seed(i)) for i in range(50)]
    assert all(0.1 <= d <= 0.3 for d in draws)
    assert len(set(draws)) > 1
    assert RandomRangeRate([0.1, 0.3], seed=4)("w", None) == RandomRangeRate([0.1, 0.3], seed=4)("w", None)
    with pytest.raises(ConfigError):
        RandomRangeRate([0.5, 0.1])


def test_per_param_rate_uses_star_default_and_canonical_names() -> None:
    rate = PerParamRate({"module.conv1.weight": 0.3, "*": 0.1}, "levels")
    assert rate("conv1.weight", None) == 0.3
    assert rate("fc.weight", None) == 0.1
    assert PerParamRate({"conv1.weight": 0.3}, "levels")("fc.weight", None) is None


def test_linear_growth_is_the_splicing_sensitivity_schedule() -> None:
    assert linear_growth(0.5, 0.0, 10, 0) == 0.5
    assert linear_growth(0.5, 0.1, 10, 0) == pytest.approx(0.5 * 2)


def test_structured_agp_prunes_the_agp_fraction_at_each_epoch() -> None:
    model = conv_model()
    pruner = build_pruner(
        {
            "class": "L1RankedStructureParameterPruner_AGP",
            "initial_sparsity": 0.1,
            "final_sparsity": 0.5,
            "group_type": "Filters",
            "weights": ["3.weight"],
        }
    )
    for epoch in range(0, 30, 2):
        masks = compute_masks(model, pruner, window_meta(model, epoch))
        filters_kept = masks["3.weight"].mask.reshape(16, -1).amax(dim=1)
        expected = int(agp_target(0.1, 0.5, epoch, 0, 30, 2) * 16)
        assert int((filters_kept == 0).sum()) == expected, epoch
