"""Each schedule mistake gives the documented error type, and a message with file, YAML path, line and fix."""

from __future__ import annotations

import logging
import textwrap

import pytest

from distiller.config import file_config, validate_schedule
from distiller.errors import ConfigError, ScheduleError
from distiller.models import create_model

GOOD = """\
version: 1
pruners:
  p1:
    class: AutomatedGradualPruner
    initial_sparsity: 0.05
    final_sparsity: 0.5
    weights: [conv2.weight, module.fc1.weight]
lr_schedulers:
  lr:
    class: StepLR
    step_size: 2
policies:
  - pruner:
      instance_name: p1
    starting_epoch: 0
    ending_epoch: 4
    frequency: 1
  - lr_scheduler:
      instance_name: lr
    starting_epoch: 0
    ending_epoch: 10
    frequency: 1
"""


@pytest.fixture(scope="module")
def model():
    return create_model("simplenet_mnist")


def _write(tmp_path, text: str):
    path = tmp_path / "schedule.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _expect(tmp_path, model, text, cls, *pieces, line=None):
    path = _write(tmp_path, text)
    with pytest.raises(cls) as info:
        validate_schedule(path, model)
    message = str(info.value)
    assert str(path) in message, message
    assert "Fix:" in message, message
    for piece in pieces:
        assert piece in message, f"{piece!r} not in {message!r}"
    if line is not None:
        assert f"line {line}" in message, message
    return message


def test_good_schedule_validates(tmp_path, model):
    plan = validate_schedule(_write(tmp_path, GOOD), model)
    assert plan.policies[0].tensors == ["conv2.weight", "fc1.weight"]
    assert [p.instance_name for p in plan.fires_at(0)] == ["p1", "lr"]


def test_invalid_yaml_syntax_names_the_line(tmp_path, model):
    text = GOOD.replace("    final_sparsity: 0.5\n", "    final_sparsity: 0.5\n   bad: [1, 2\n")
    _expect(tmp_path, model, text, ConfigError, "invalid YAML", line=7)


def test_unknown_class_with_close_matches(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("class: AutomatedGradualPruner", "class: AutomatedGradualPrunner"),
        ConfigError,
        "pruners.p1.class",
        "unknown pruner class 'AutomatedGradualPrunner'",
        "Did you mean 'AutomatedGradualPruner'",
        line=4,
    )


def test_class_in_the_wrong_section(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("class: StepLR", "class: AutomatedGradualPruner"),
        ConfigError,
        "lr_schedulers.lr.class",
        "is a pruner: move it to 'pruners'",
    )


def test_unknown_constructor_argument(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("final_sparsity: 0.5", "final_sparsty: 0.5"),
        ConfigError,
        "pruners.p1.final_sparsty",
        "does not accept the argument 'final_sparsty'",
        "Did you mean 'final_sparsity'",
        line=6,
    )


def test_missing_constructor_argument(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("    initial_sparsity: 0.05\n", ""),
        ConfigError,
        "pruners.p1",
        "required argument(s) 'initial_sparsity'",
        "add initial_sparsity",
    )


def test_lr_scheduler_arguments_are_checked_too(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("step_size: 2", "step: 2"),
        ConfigError,
        "lr_schedulers.lr.step",
        "StepLR does not accept the argument 'step'",
    )


def test_parameter_name_matching_nothing(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("module.fc1.weight", "module.fc3.weight"),
        ConfigError,
        "pruners.p1.weights[1]",
        "'module.fc3.weight' matches no parameter",
        "Did you mean",
        "'fc1.weight'",
        line=7,
    )


def test_regex_matching_nothing(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("[conv2.weight, module.fc1.weight]", "['conv9.*']"),
        ConfigError,
        "pruners.p1.weights[0]",
        "matches no parameter",
    )


def test_invalid_regex(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("[conv2.weight, module.fc1.weight]", "['conv(']"),
        ConfigError,
        "nor a valid regular expression",
    )


def test_regex_expands_to_the_matching_parameters(tmp_path, model):
    plan = validate_schedule(
        _write(tmp_path, GOOD.replace("[conv2.weight, module.fc1.weight]", "['module\\.fc\\d\\.weight']")), model
    )
    assert plan.policies[0].tensors == ["fc1.weight", "fc2.weight"]


@pytest.mark.parametrize("value", ["1.5", "-0.1", "50", ".nan", "'half'"])
def test_sparsity_outside_unit_interval(tmp_path, model, value):
    msg = _expect(
        tmp_path,
        model,
        GOOD.replace("final_sparsity: 0.5", f"final_sparsity: {value}"),
        ConfigError,
        "pruners.p1.final_sparsity",
        "[0, 1]",
        line=6,
    )
    if value == "50":
        assert "percentage" in msg and "0.5" in msg


@pytest.mark.parametrize(
    "timing, pieces",
    [
        ("starting_epoch: 4\n    ending_epoch: 4\n    frequency: 1", ["greater than 'starting_epoch'"]),
        ("starting_epoch: 4\n    ending_epoch: 2\n    frequency: 1", ["greater than 'starting_epoch'"]),
        ("starting_epoch: 0\n    ending_epoch: 4\n    frequency: 0", ["'frequency' must be >= 1"]),
        ("starting_epoch: 0\n    ending_epoch: 4\n    epochs: [1, 2]", ["mixes epochs and an epoch window"]),
        ("frequency: 1", ["policies[0].frequency (line 15)", "lacks 'starting_epoch' and 'ending_epoch'"]),
        ("epochs: [0, 1.5]", ["must be an integer"]),
    ],
)
def test_bad_timing_is_a_schedule_error(tmp_path, model, timing, pieces):
    text = GOOD.replace("starting_epoch: 0\n    ending_epoch: 4\n    frequency: 1", timing, 1)
    _expect(tmp_path, model, text, ScheduleError, "policies[0]", *pieces, line=15 if "frequency (" in pieces[0] else 13)


def test_missing_timing_is_a_schedule_error(tmp_path, model):
    text = GOOD.replace("    starting_epoch: 0\n    ending_epoch: 4\n    frequency: 1\n", "", 1)
    _expect(tmp_path, model, text, ScheduleError, "policies[0]", "no timing")


def test_misspelled_timing_key(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("frequency: 1", "frequncy: 1", 1),
        ScheduleError,
        "policies[0].frequncy",
        "Did you mean 'frequency'",
        line=17,
    )


def test_policy_naming_an_undefined_instance(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("instance_name: p1", "instance_name: p2"),
        ScheduleError,
        "policies[0].pruner.instance_name",
        "pruner 'p2' is not defined",
        "Defined pruners: p1",
        line=14,
    )


def test_policy_naming_an_instance_of_another_section(tmp_path, model):
    _expect(
        tmp_path,
        model,
        GOOD.replace("instance_name: p1", "instance_name: lr"),
        ScheduleError,
        "It is defined under 'lr_schedulers'",
    )


def test_policy_with_two_components(tmp_path, model):
    text = GOOD.replace(
        "  - pruner:\n      instance_name: p1\n",
        "  - pruner:\n      instance_name: p1\n    lr_scheduler:\n      instance_name: lr\n",
    )
    _expect(tmp_path, model, text, ScheduleError, "policies[0]", "several components")


def test_unknown_pruning_policy_argument(tmp_path, model):
    text = GOOD.replace("      instance_name: p1\n", "      instance_name: p1\n      args:\n        keep_masks: true\n")
    _expect(tmp_path, model, text, ConfigError, "policies[0].pruner.args", "'keep_masks'", "keep_mask")


def test_more_than_one_quantizer(tmp_path, model):
    text = GOOD + "quantizers:\n  q1:\n    class: A\n  q2:\n    class: B\n"
    _expect(tmp_path, model, text, ConfigError, "quantizers", "only one is supported", line=23)


def test_unknown_top_level_section_is_a_warning_naming_it(tmp_path, model, caplog):
    text = GOOD + "pruner:\n  x: 1\nnetwork:\n  conv1: 0.5\n"
    with caplog.at_level(logging.WARNING, logger="distiller.config"):
        plan = validate_schedule(_write(tmp_path, text), model)
    warning = plan.warnings[0]
    assert "'pruner', 'network'" in warning and "Did you mean 'pruner' -> 'pruners'" in warning
    assert "line 23" in warning
    assert any("'network'" in r.getMessage() for r in caplog.records)


def test_plateau_in_a_step_window(tmp_path, model):
    text = GOOD.replace("class: StepLR\n    step_size: 2", "class: ReduceLROnPlateau").replace(
        "    starting_epoch: 0\n    ending_epoch: 10\n    frequency: 1", "    ending_step: 100"
    )
    _expect(tmp_path, model, text, ScheduleError, "policies[1]", "validation metrics")


def test_missing_file_and_non_mapping_document(tmp_path, model):
    with pytest.raises(ConfigError, match="does not exist"):
        validate_schedule(tmp_path / "nope.yaml", model)
    _expect(tmp_path, model, "- a\n- b\n", ConfigError, "must be a map of sections")


def test_constructor_errors_are_config_errors_with_the_location(tmp_path, model):
    text = GOOD.replace(
        "class: StepLR\n    step_size: 2",
        "class: MultiStepMultiGammaLR\n    milestones: [3, 1]\n    gammas: [0.1, 0.1]",
    )
    _expect(tmp_path, model, text, ConfigError, "lr_schedulers.lr", "milestones must be increasing")


def test_file_config_returns_a_working_scheduler(tmp_path, model):
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = file_config(model, opt, _write(tmp_path, GOOD))
    scheduler.on_epoch_begin(0, opt)
    assert scheduler.masks["conv2.weight"].mask is not None
    assert scheduler.masks["fc1.weight"].mask is not None and scheduler.masks["fc2.weight"].mask is None
