"""Every schedule of the original in ../shared/reference/original-samples loads unchanged.

Each file validates against its architecture. Files whose classes come with later issues
(quantizers with the quantization issues) are expected failures until those classes are registered;
a second test checks everything else in them with stand-ins.
"""

from __future__ import annotations

import pytest

from distiller.config import load_yaml_file, registry_for, validate_schedule
from distiller.config.schema import SECTIONS
from distiller.errors import ConfigError
from distiller.models import create_model
from shared_data import ORIGINAL_SAMPLES, require

SCHEDULES = {
    "resnet20_filters.schedule_agp.yaml": "resnet20_cifar",
    "ssl_channels-removal_training.yaml": "resnet20_cifar",
    "preact_resnet20_cifar_pact.yaml": "preact_resnet20_cifar",
    "resnet20.network_surgery.yaml": "resnet20_cifar",
    "alexnet.schedule_sensitivity.yaml": "alexnet",
    "resnet56_cifar_filter_rank.yaml": "resnet56_cifar",
    "resnet18_imagenet_post_train.yaml": "resnet18",
}
LATER: dict[str, str] = {}


def _unregistered(filename: str) -> list[str]:
    path = ORIGINAL_SAMPLES / filename
    if not path.exists():
        return []
    data = load_yaml_file(path).data
    missing = []
    for section in SECTIONS:
        registry = registry_for(section)
        for body in (data.get(section) or {}).values():
            if registry is None or body["class"] not in registry:
                missing.append(body["class"])
    return missing


def _params():
    for filename, arch in SCHEDULES.items():
        missing = _unregistered(filename)
        reason = "; ".join(sorted({LATER.get(m, f"{m} is not registered yet") for m in missing}))
        marks = [pytest.mark.xfail(reason=reason, raises=ConfigError, strict=True)] if missing else []
        yield pytest.param(filename, arch, id=filename, marks=marks)


@pytest.mark.parametrize("filename, arch", list(_params()))
def test_original_schedule_validates_unchanged(filename, arch):
    path = require(ORIGINAL_SAMPLES / filename)
    plan = validate_schedule(path, create_model(arch))
    assert plan.scheduler is not None
    assert all("module." not in t for p in plan.policies for t in p.tensors)


@pytest.mark.parametrize("filename, arch", list(SCHEDULES.items()), ids=list(SCHEDULES))
def test_original_schedule_validates_with_stand_ins(filename, arch, stub_extensions, stub_quantizers):
    path = require(ORIGINAL_SAMPLES / filename)
    plan = validate_schedule(path, create_model(arch))
    assert plan.scheduler is not None


def test_resnet20_filters_plan(stub_extensions):
    plan = validate_schedule(
        require(ORIGINAL_SAMPLES / "resnet20_filters.schedule_agp.yaml"), create_model("resnet20_cifar")
    )
    assert [p.instance_name for p in plan.fires_at(30)] == ["net_thinner", "fine_pruner", "fc_pruner", "pruning_lr"]
    assert [p.instance_name for p in plan.fires_at(28)] == ["low_pruner", "pruning_lr"]
    assert plan.fires_at(29) == plan.fires_at(31)[-1:]
    low = plan.policies[0]
    assert low.tensors[0] == "layer2.0.conv1.weight" and len(low.tensors) == 7
    assert (low.window.start, low.window.end, low.window.frequency) == (0, 30, 2)
    text = plan.describe()
    assert "epochs 0-28 every 2: low_pruner, pruning_lr" in text
    assert "layer3.1.conv1.weight" in text and "module." not in text.split("Warnings:")[0]


def test_alexnet_features_module_names_are_normalized():
    plan = validate_schedule(require(ORIGINAL_SAMPLES / "alexnet.schedule_sensitivity.yaml"), create_model("alexnet"))
    assert plan.policies[0].tensors[:2] == ["features.0.weight", "features.3.weight"]
    assert plan.fires_at(24)[-1].instance_name == "pruning_lr"


def test_ssl_duplicate_keys_are_reported_but_load(stub_extensions, caplog):
    plan = validate_schedule(
        require(ORIGINAL_SAMPLES / "ssl_channels-removal_training.yaml"), create_model("resnet20_cifar")
    )
    assert any("repeated" in w and "layer2.1.conv2.weight" in w for w in plan.warnings)
    reg = plan.policies[2]
    assert reg.kind == "regularizer" and reg.args == {"keep_mask": True}
    assert [p.instance_name for p in plan.fires_at(179)] == [
        "net_thinner",
        "Channels_groups_regularizer",
        "training_lr",
    ]


def test_pact_quantizer_is_prepared_when_its_policy_first_fires(stub_quantizers):
    model = create_model("preact_resnet20_cifar")
    plan = validate_schedule(require(ORIGINAL_SAMPLES / "preact_resnet20_cifar_pact.yaml"), model)
    quantizer = plan.scheduler.entries[0].policy.quantizer
    assert list(quantizer.overrides) == ["conv1", "layer1.0.pre_relu", "final_relu", "fc"]  # file order kept
    if hasattr(quantizer, "prepared") and isinstance(quantizer.prepared, int):
        assert quantizer.prepared == 0
        plan.scheduler.on_epoch_begin(0)
        assert quantizer.prepared == 1


def test_statistics_file_is_not_a_schedule_and_says_so():
    plan = validate_schedule(require(ORIGINAL_SAMPLES / "resnet18_quant_stats.yaml"), create_model("resnet18"))
    assert plan.policies == []
    assert len(plan.warnings) == 1 and "unknown top-level sections 'conv1', 'bn1'" in plan.warnings[0]
