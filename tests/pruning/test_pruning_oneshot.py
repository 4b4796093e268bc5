"""One-shot pruning from Python, building pruners through the registry, user-registered pruners."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pruning_helpers import conv_model, params

from distiller.errors import ConfigError, ScheduleError
from distiller.pruning import PRUNERS, Pruner, agp_target, build_pruner, prune, register_pruner
from distiller.sparsity import MaskSet

REPO_ROOT = Path(__file__).resolve().parents[2]

L1_FILTERS = {
    "class": "L1RankedStructureParameterPruner",
    "desired_sparsity": 0.5,
    "group_type": "Filters",
    "weights": ["0.weight", "3.weight"],
}


def test_prune_builds_runs_and_applies_masks() -> None:
    model = conv_model()
    masks = prune(model, L1_FILTERS)
    assert isinstance(masks, MaskSet)
    w = params(model)["3.weight"].detach()
    assert torch.equal(w, w * masks["3.weight"].mask)
    assert int((w.reshape(16, -1).abs().sum(dim=1) == 0).sum()) == 8
    assert masks["7.weight"].mask is None


def test_prune_updates_given_masks_and_takes_a_window() -> None:
    model = conv_model()
    masks = prune(model, {"class": "SparsityLevelParameterPruner", "levels": {"7.weight": 0.5}})
    agp = {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.8, "weights": "0.weight"}
    with pytest.raises(ScheduleError, match="span"):
        prune(model, agp, masks=masks)  # a one-epoch window has no room for a gradual schedule
    same = prune(model, agp, masks=masks, epoch=6, meta={"starting_epoch": 0, "ending_epoch": 30, "frequency": 2})
    assert same is masks and masks["7.weight"].mask is not None
    expected = round(agp_target(0.1, 0.8, 6, 0, 30, 2) * 216)
    assert int((masks["0.weight"].mask == 0).sum()) == expected


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"class": "L1RankedStructureParameterPrunner", "desired_sparsity": 0.5}, "Did you mean"),
        ({**L1_FILTERS, "desired_sparsty": 0.5}, "desired_sparsity"),
        ({"class": "L1RankedStructureParameterPruner", "group_type": "Filters", "weights": ["0.weight"]}, "missing"),
        ({**L1_FILTERS, "desired_sparsity": 2}, r"\[0, 1\]"),
        ({**L1_FILTERS, "group_type": "Filtres"}, "Filters"),
        ({**L1_FILTERS, "weights": ["layer9.weight"]}, "layer9.weight"),
        ({"desired_sparsity": 0.5}, "'class'"),
    ],
)
def test_bad_configs_raise_config_errors_that_name_the_fix(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prune(conv_model(), config)


def test_structure_pruner_receives_the_model() -> None:
    model = conv_model()
    config = {
        "class": "StructureParameterPruner",
        "reg_regims": {"module.3.weight": [0.05, "Kernels"]},
        "threshold_criteria": "Max",
    }
    pruner = build_pruner(config, model)
    assert pruner.model is model
    masks = prune(model, pruner)
    kernels = masks["3.weight"].mask.reshape(128, 9)
    assert torch.equal(kernels.amin(dim=1), kernels.amax(dim=1))


def test_objects_with_the_original_protocol_work_without_the_base_class() -> None:
    class HalfOfConv1:
        name = "half"

        def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
            if param_name == "0.weight":
                mask = torch.ones_like(param)
                mask[:4] = 0
                zeros_mask_dict[param_name].mask = mask

    masks = prune(conv_model(), HalfOfConv1())
    assert int(masks["0.weight"].mask.sum()) == 4 * 27
    with pytest.raises(ConfigError, match="not a pruner"):
        prune(conv_model(), object())


def test_register_pruner_refuses_to_shadow_a_name_unless_asked() -> None:
    @register_pruner("_TestOnlyPruner")
    class First(Pruner):
        pass

    assert PRUNERS.get("_TestOnlyPruner") is First
    with pytest.raises(ConfigError, match="already registered"):

        @register_pruner("_TestOnlyPruner")
        class Second(Pruner):
            pass

    @register_pruner("_TestOnlyPruner", replace=True)
    class Third(Pruner):
        pass

    assert PRUNERS.get("_TestOnlyPruner") is Third


def test_the_custom_pruner_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "custom_pruner.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "fc1.weight" in result.stdout and "sparsity  87.50%" in result.stdout
