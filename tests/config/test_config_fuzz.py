"""Fuzz the loader: malformed and random schedules either load or raise ConfigError, never anything else."""

from __future__ import annotations

import contextlib
import logging
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distiller.config import YamlSource, build_schedule, load_yaml_text
from distiller.errors import ConfigError
from distiller.models import create_model

GOOD = """\
version: 1
pruners:
  p1:
    class: AutomatedGradualPruner
    initial_sparsity: 0.05
    final_sparsity: 0.5
    weights: [conv2.weight, module.fc1.weight]
  p2:
    class: SensitivityPruner
    sensitivities: {'*': 0.5, fc2.weight: 0.2}
regularizers:
  r1:
    class: L1Regularizer
    reg_regims: {conv1.weight: 0.001}
lr_schedulers:
  lr:
    class: MultiStepMultiGammaLR
    milestones: [2, 4]
    gammas: [0.5, 0.5]
policies:
  - pruner:
      instance_name: p1
      args: {keep_mask: true, mini_batch_pruning_frequency: 2}
    starting_epoch: 0
    ending_epoch: 4
    frequency: 1
  - pruner:
      instance_name: p2
    epochs: [0, 2]
  - regularizer:
      instance_name: r1
      args: {keep_mask: false}
    starting_step: 0
    ending_step: 100
  - lr_scheduler:
      instance_name: lr
    starting_epoch: 0
    ending_epoch: 10
    frequency: 1
"""

KEYS = [
    "version",
    "pruners",
    "regularizers",
    "quantizers",
    "lr_schedulers",
    "extensions",
    "distillation",
    "policies",
    "class",
    "instance_name",
    "args",
    "pruner",
    "regularizer",
    "quantizer",
    "lr_scheduler",
    "extension",
    "starting_epoch",
    "ending_epoch",
    "frequency",
    "epochs",
    "starting_step",
    "ending_step",
    "step_frequency",
    "weights",
    "levels",
    "sensitivities",
    "reg_regims",
    "initial_sparsity",
    "final_sparsity",
    "desired_sparsity",
    "group_type",
    "keep_mask",
    "step_size",
    "gamma",
    "milestones",
    "gammas",
    "T_max",
    "teacher_arch",
    "*",
    "conv1.weight",
    "module.fc1.weight",
    "p1",
    "lr",
    "x",
]
CLASSES = [
    "AutomatedGradualPruner",
    "SensitivityPruner",
    "L1RankedStructureParameterPruner",
    "SplicingPruner",
    "L1Regularizer",
    "GroupLassoRegularizer",
    "StepLR",
    "LambdaLR",
    "ReduceLROnPlateau",
    "PolynomialLR",
    "MultiStepMultiGammaLR",
    "OneCycleLR",
    "KnowledgeDistillation",
    "FilterRemover",
    "Nope",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(KEYS + CLASSES + ["Filters", "Channels", "simplenet_mnist", "conv.*", "(", ""]),
    st.text(max_size=8),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers(-2, 5), st.none())
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
        st.dictionaries(st.just("class"), st.sampled_from(CLASSES), min_size=1).flatmap(
            lambda d: st.dictionaries(st.sampled_from(KEYS), children, max_size=4).map(lambda e: {**e, **d})
        ),
    ),
    max_leaves=30,
)
sections = st.fixed_dictionaries(
    {},
    optional={
        "pruners": st.dictionaries(st.sampled_from(["p1", "p2"]), trees, max_size=2),
        "regularizers": st.dictionaries(st.sampled_from(["r1"]), trees, max_size=1),
        "lr_schedulers": st.dictionaries(st.sampled_from(["lr"]), trees, max_size=1),
        "distillation": st.dictionaries(st.sampled_from(["kd"]), trees, max_size=1),
        "policies": st.lists(trees, max_size=4),
        "version": scalars,
        "network": trees,
    },
)

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def model():
    return create_model("simplenet_mnist")


@pytest.fixture(autouse=True)
def _quiet():
    logging.getLogger("distiller").setLevel(logging.ERROR)
    yield
    logging.getLogger("distiller").setLevel(logging.NOTSET)


def _loads_or_config_error(model, make_source) -> None:
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with contextlib.suppress(ConfigError):  # any other exception type propagates and fails the test
        build_schedule(model, opt, make_source())


def test_the_fuzz_seed_schedule_is_valid(model):
    import torch

    plan = build_schedule(model, torch.optim.SGD(model.parameters(), lr=0.1), load_yaml_text(GOOD, "good.yaml"))
    assert len(plan.policies) == 4


@FUZZ
@given(st.text(max_size=200))
def test_random_yaml_text(model, text):
    _loads_or_config_error(model, lambda: load_yaml_text(text, "fuzz.yaml"))


@FUZZ
@given(st.data())
def test_mutated_schedule_text(model, data):
    lines = GOOD.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["delete", "dup", "indent", "dedent", "replace", "swap"]))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = "  " + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][2:]
        elif op == "swap":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            key, sep, _ = lines[i].partition(":")
            value = data.draw(st.sampled_from(["-1", "0", "1.5", "[]", "{}", "null", "'*'", "[a, 1]", "x", "1e-4"]))
            lines[i] = f"{key}{sep} {value}" if sep else value
    text = "\n".join(lines)
    _loads_or_config_error(model, lambda: load_yaml_text(text, "mutated.yaml"))


@FUZZ
@given(st.one_of(sections, trees))
def test_random_dict_trees(model, tree):
    _loads_or_config_error(model, lambda: YamlSource("<dict>", tree))


def test_hostile_yaml(model):
    for text in [
        "[" * 5000,
        "a: &x [*x]\npolicies: *x\n",
        "!!python/object/apply:os.system ['echo hi']\n",
        "a: 1\n---\nb: 2\n",
        "pruners: {p: {class: AutomatedGradualPruner, initial_sparsity: 2018-13-45}}",
        "\t- bad tab",
        "policies: [{pruner: {instance_name: p}, epochs: [" + ",".join(["1"] * 3) + "]}]",
    ]:
        _loads_or_config_error(model, lambda text=text: load_yaml_text(text, "hostile.yaml"))
    assert math.isfinite(1.0)
