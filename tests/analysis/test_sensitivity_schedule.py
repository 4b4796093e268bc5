"""From a sensitivity table to per-layer targets and an AGP schedule that validates."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import yaml

from distiller.analysis.sensitivity_schedule import (
    check_table_names,
    parse_unit_name,
    schedule_from_targets,
    sensitivity_targets,
    write_schedule,
)
from distiller.config import validate_schedule
from distiller.errors import ConfigError
from distiller.models import create_model


def curve(*top1: float, step: float = 0.1) -> OrderedDict:
    """A row-set with the given top-1 values at 0, step, 2*step, ... (top-5 = top-1 + 5, loss 1)."""
    return OrderedDict((round(i * step, 10), (v, v + 5.0, 1.0)) for i, v in enumerate(top1))


TABLE = OrderedDict(
    [
        ("conv1.weight", curve(90.0, 89.5, 88.0, 80.0)),  # within 1: 0.1; within 2: 0.2
        ("conv2.weight", curve(90.0, 90.0, 89.2, 89.0)),  # within 1: 0.3 (drop exactly 1.0)
        ("fc.weight", curve(90.0, 85.0, 70.0, 60.0)),  # nothing above 0 within 1
        ("layer.x.weight", curve(91.0, 88.0, 90.5, 85.0)),  # non-monotone: 0.2 qualifies, 0.1 does not
    ]
)


def targets_of(table, max_loss, metric="top1"):
    return {t.name: t.sparsity for t in sensitivity_targets(table, max_loss, metric)}


def test_targets_are_the_highest_level_within_the_budget() -> None:
    assert targets_of(TABLE, 1.0) == {"conv1.weight": 0.1, "conv2.weight": 0.3, "fc.weight": 0.0, "layer.x.weight": 0.2}
    assert targets_of(TABLE, 2.0) == {"conv1.weight": 0.2, "conv2.weight": 0.3, "fc.weight": 0.0, "layer.x.weight": 0.2}
    assert targets_of(TABLE, 0.0) == {"conv1.weight": 0.0, "conv2.weight": 0.1, "fc.weight": 0.0, "layer.x.weight": 0.0}
    assert targets_of(TABLE, 100.0) == dict.fromkeys(TABLE, 0.3)
    target = sensitivity_targets(TABLE, 2.0)[0]
    assert (target.dense, target.value, target.drop) == (90.0, 88.0, 2.0)


def test_top5_metric_uses_the_second_column() -> None:
    table = OrderedDict([("w", OrderedDict([(0.0, (90.0, 99.0, 1.0)), (0.5, (80.0, 98.5, 2.0))]))])
    assert targets_of(table, 1.0, "top5") == {"w": 0.5}
    assert targets_of(table, 1.0, "top1") == {"w": 0.0}


def test_target_errors() -> None:
    no_dense = OrderedDict([("w", OrderedDict([(0.1, (1.0, 1.0, 1.0))]))])
    with pytest.raises(ConfigError, match="t.csv: 'w' has no row at sparsity 0.*--sense-range"):
        sensitivity_targets(no_dense, 1.0, source="t.csv")
    with pytest.raises(ConfigError, match="--max-loss.*>= 0"):
        sensitivity_targets(TABLE, -1.0)
    with pytest.raises(ConfigError, match="--metric"):
        sensitivity_targets(TABLE, 1.0, "loss")


def test_element_schedule_groups_parameters_by_target() -> None:
    schedule = schedule_from_targets(sensitivity_targets(TABLE, 2.0), "element")
    assert schedule["version"] == 1
    assert schedule["pruners"] == {
        "agp_0_3": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.05, "final_sparsity": 0.3,
                    "weights": ["conv2.weight"]},
        "agp_0_2": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.05, "final_sparsity": 0.2,
                    "weights": ["conv1.weight", "layer.x.weight"]},
    }
    assert schedule["policies"] == [
        {"pruner": {"instance_name": name}, "starting_epoch": 0, "ending_epoch": 30, "frequency": 2}
        for name in ("agp_0_3", "agp_0_2")
    ]


def test_structure_schedules_and_group_rows() -> None:
    table = OrderedDict(
        [
            ("group0:conv1.weight;layer1.0.conv2.weight", curve(90.0, 89.9, 80.0, step=0.05)),
            ("layer1.0.conv1.weight", curve(90.0, 89.9, 80.0, step=0.05)),
        ]
    )
    targets = sensitivity_targets(table, 0.5)
    filters = schedule_from_targets(targets, "filter", start_epoch=1, end_epoch=5, frequency=1)
    assert filters["pruners"] == {
        "group_filters_0_05": {"class": "L1RankedStructureParameterPruner_AGP", "group_type": "Filters",
                               "group_dependency": "Coupled", "initial_sparsity": 0.0, "final_sparsity": 0.05,
                               "weights": ["conv1.weight", "layer1.0.conv2.weight"]},
        "filters_0_05": {"class": "L1RankedStructureParameterPruner_AGP", "group_type": "Filters",
                         "initial_sparsity": 0.0, "final_sparsity": 0.05, "weights": ["layer1.0.conv1.weight"]},
    }
    assert {p["starting_epoch"] for p in filters["policies"]} == {1}
    channels = schedule_from_targets(targets[1:], "channel")
    assert channels["pruners"]["channels_0_05"]["group_type"] == "Channels"
    with pytest.raises(ConfigError, match="coupled channel group.*--sense filter"):
        schedule_from_targets(targets, "element")
    with pytest.raises(ConfigError, match="nothing to prune; raise --max-loss"):
        schedule_from_targets(sensitivity_targets(table, 0.01), "filter")
    with pytest.raises(ConfigError, match="AGP window"):
        schedule_from_targets(targets, "filter", start_epoch=3, end_epoch=3)


def test_parse_unit_names() -> None:
    assert parse_unit_name("group12:a.weight;b.weight") == (12, ["a.weight", "b.weight"])
    assert parse_unit_name("module.conv1.weight") == (None, ["module.conv1.weight"])


def test_table_names_are_checked_against_the_model() -> None:
    names = [n for n, _ in create_model("simplenet_digits", "digits").named_parameters()]
    check_table_names(["module.conv1.weight", "group1:conv2.weight"], names, "s.csv", "simplenet_digits")
    with pytest.raises(ConfigError, match="s.csv: 'conv9.weight' is not a parameter of simplenet_digits"):
        check_table_names(["conv9.weight"], names, "s.csv", "simplenet_digits")
    with pytest.raises(ConfigError, match=r"s.csv: 'fc2.weight' \(in row 'group1:conv2.weight;fc2.weight'\)"):
        check_table_names(["group1:conv2.weight;fc2.weight"], names, "s.csv", "simplenet_digits")


def test_generated_schedules_validate_against_the_model(tmp_path) -> None:
    resnet = create_model("resnet20_cifar", "cifar10")
    table = OrderedDict(
        [
            ("group0:conv1.weight;layer1.0.conv2.weight;layer1.1.conv2.weight;layer1.2.conv2.weight",
             curve(91.0, 90.8, 90.0)),
            ("group1:layer1.0.conv1.weight", curve(91.0, 90.9, 85.0)),
        ]
    )
    schedule = schedule_from_targets(sensitivity_targets(table, 1.0), "filter")
    plan = validate_schedule(schedule, resnet)
    assert len(plan.policies) == 2
    path = write_schedule(schedule, tmp_path / "s.yaml", "made by a test\nsecond line")
    text = path.read_text()
    assert text.startswith("# made by a test\n# second line\nversion: 1\n")
    assert yaml.safe_load(text) == schedule
    validate_schedule(path, resnet)
