"""The pure parts of AMC: action scaling and rounding, the mac-constrained clamp, the reward protocols."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distiller.amc.actions import (
    allowed_counts,
    check_action_range,
    check_reachable,
    clamp_to_target,
    removal_count,
    scale_action,
)
from distiller.amc.macs import Footprint, LayerCost, MacModel
from distiller.amc.rewards import (
    accuracy_guaranteed_reward,
    check_protocol,
    compute_reward,
    harmonic_mean_reward,
    punish_agent_reward,
)
from distiller.errors import ConfigError


def test_scale_action_maps_the_agent_range_onto_the_action_range():
    assert scale_action(-1, 0.0, 0.8) == 0.0
    assert scale_action(1, 0.0, 0.8) == pytest.approx(0.8)
    assert scale_action(0, 0.2, 0.6) == pytest.approx(0.4)
    assert scale_action(7, 0.2, 0.6) == pytest.approx(0.6)  # clipped


def test_removal_count_floors_never_removes_all_and_rounds_kept_to_the_group_size():
    assert removal_count(0.5, 16) == 8
    assert removal_count(0.29, 100) == 29  # 0.29 * 100 is 28.999... in floating point
    assert removal_count(0.99, 4) == 3
    assert removal_count(0.0, 4) == 0
    assert removal_count(0.5, 20, group_size=8) == 4  # keep 10 -> rounded up to 16
    assert removal_count(0.9, 20, group_size=8) == 12  # keep 2 -> 8
    assert removal_count(0.5, 6, group_size=8) == 0  # fewer channels than a group: keep them all
    assert allowed_counts(20, 8, 0, 20) == [0, 4, 12]


def test_action_range_is_checked_with_the_flag_name():
    assert check_action_range(0.0, 0.8) == (0.0, 0.8)
    for low, high in ((0.5, 0.2), (-0.1, 0.5), (0.0, 1.0)):
        with pytest.raises(ConfigError, match="--amc-action-range"):
            check_action_range(low, high)


def chain(widths, hw=64):
    """A chain of convolutions: step i prunes conv i's filters and conv i+1's input channels."""
    layers = [
        LayerCost(f"c{i}", f"c{i}.weight", hw * 9 * cout * cin, cout, cin)
        for i, (cin, cout) in enumerate(zip([3, *widths[:-1]], widths))
    ]
    foot = tuple((Footprint(i, 0, 1), Footprint(i + 1, 1, 1)) for i in range(len(widths) - 1))
    return MacModel(tuple(layers), foot)


def test_unreachable_targets_are_refused_before_any_episode():
    model = chain([16, 16, 16])
    max_counts = [removal_count(0.5, 16)] * 2
    with pytest.raises(ConfigError, match="--amc-target-density 0.1 cannot be reached"):
        check_reachable(model, max_counts, 0.1)
    check_reachable(model, max_counts, 0.6)


@settings(max_examples=60, deadline=None)
@given(
    widths=st.lists(st.integers(2, 24), min_size=2, max_size=6),
    proposals=st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6),
    target=st.floats(0.05, 0.95),
    high=st.floats(0.3, 0.95),
    group=st.sampled_from([1, 2, 4]),
)
def test_mac_constrained_clamp_always_reaches_a_reachable_target(widths, proposals, target, high, group):
    model = chain(widths)
    steps = len(widths) - 1
    channels = widths[:-1]
    max_counts = [removal_count(high, c, group) for c in channels]
    if model.macs(max_counts) > target * model.dense_macs:
        with pytest.raises(ConfigError):
            check_reachable(model, max_counts, target)
        return
    removed = [0] * steps
    for t in range(steps):
        proposed = removal_count(proposals[t] * high, channels[t], group)
        candidates = allowed_counts(channels[t], group, proposed, max_counts[t])
        count = clamp_to_target(model, removed, t, candidates, max_counts, target * model.dense_macs)
        assert proposed <= count <= max_counts[t]
        if count > proposed:  # raised only as far as needed: one allowed count less would break the invariant
            smaller = [c for c in candidates if c < count][-1]
            plan = [*removed[:t], smaller, *max_counts[t + 1 :]]
            assert model.macs(plan) > target * model.dense_macs
        removed[t] = count
    assert model.macs(removed) <= target * model.dense_macs


def test_rewards_follow_the_protocols():
    assert compute_reward("mac-constrained", 71.5, 10, 100, 0.5) == pytest.approx(0.715)
    assert accuracy_guaranteed_reward(90.0, math.e**10) == pytest.approx(-1.0)
    assert compute_reward("accuracy-guaranteed", 90.0, math.e**10, 1e6) == pytest.approx(-1.0)
    assert punish_agent_reward(80.0, 40, 100, 0.5) == pytest.approx(0.8)
    assert punish_agent_reward(80.0, 70, 100, 0.5) == pytest.approx(-0.2)
    assert harmonic_mean_reward(50.0, 50, 100) == pytest.approx(0.5)
    assert harmonic_mean_reward(100.0, 25, 100) == pytest.approx(2 * 0.75 / 1.75)
    assert harmonic_mean_reward(0.0, 100, 100) == 0.0


def test_protocol_checks_name_the_flags():
    with pytest.raises(ConfigError, match="--amc-protocol"):
        check_protocol("mac-constrained-experimental", 0.5)
    with pytest.raises(ConfigError, match="--amc-target-density"):
        check_protocol("mac-constrained", None)
    with pytest.raises(ConfigError, match="--amc-target-density"):
        check_protocol("punish-agent", 1.5)
    check_protocol("accuracy-guaranteed", None)
    check_protocol("harmonic-mean", None)
