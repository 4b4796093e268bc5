"""EarlyExitInference: the same predictions as the full model or its exits, and later layers really skipped."""

from __future__ import annotations

import pytest
import torch

from distiller.early_exit import EarlyExitInference, ExitSimulation, exit_macs
from distiller.errors import ConfigError
from distiller.models import create_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("resnet20_cifar_earlyexit").eval()
    with torch.no_grad():  # a stronger exit head, so that its entropies spread over a usable range
        m.early_exits[0][2].weight.mul_(20)
    return m


@pytest.fixture(scope="module")
def samples():
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _count_calls(module):
    calls = [0]
    handle = module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls, handle


@torch.no_grad()
def test_threshold_zero_runs_everything_and_equals_the_final_output(model, samples) -> None:
    inference = EarlyExitInference(model, [0.0])
    for x in samples.split(1):
        torch.testing.assert_close(inference(x), model(x)[-1], rtol=0, atol=0)
        assert inference.last_exit == 1
    assert inference.exits_taken == [0, len(samples)]


@torch.no_grad()
def test_a_large_threshold_exits_at_exit_0_and_skips_the_later_layers(model, samples) -> None:
    inference = EarlyExitInference(model, [100.0])
    fc_calls, fc_hook = _count_calls(model.fc)
    layer2_calls, layer2_hook = _count_calls(model.layer2)
    try:
        for x in samples.split(1):
            logits = inference(x)
            layer1 = model.layer1(model.relu(model.bn1(model.conv1(x))))
            torch.testing.assert_close(logits, model.early_exits[0](layer1))
            assert inference.last_exit == 0
        assert fc_calls[0] == 0 and layer2_calls[0] == 0
        model(samples[:1])  # the model itself still runs to the end
        assert fc_calls[0] == 1
    finally:
        fc_hook.remove()
        layer2_hook.remove()


@torch.no_grad()
def test_inference_takes_the_exits_the_simulation_counts(model, samples) -> None:
    entropies = []
    for x in samples.split(1):
        p = model(x)[0].softmax(dim=1)
        entropies.append(float(-(p * p.log()).sum()))
    threshold = sorted(entropies)[len(entropies) // 2]  # about half exit early
    inference = EarlyExitInference(model, [threshold])
    simulation = ExitSimulation([threshold])
    for x in samples.split(1):
        logits = inference(x)
        outputs = model(x)
        taken = int(simulation.update(outputs, torch.zeros(1, dtype=torch.long))[0])
        assert inference.last_exit == taken
        torch.testing.assert_close(logits, outputs[taken], rtol=0, atol=0)
    assert 0 < inference.exits_taken[0] < len(samples)
    assert inference.exits_taken == simulation.taken


def test_exit_macs_of_resnet20(model) -> None:
    costs = exit_macs(model, torch.zeros(1, 3, 32, 32))
    assert costs.backbone == 40_813_184  # the original's `--summary compute` total of resnet20_cifar
    assert costs.branches == (16_000,)  # Linear(1600, 10)
    assert costs.cumulative[-1] == costs.backbone + 16_000
    assert 0 < costs.cumulative[0] < costs.backbone / 2


def test_misuse_is_explained(model, samples) -> None:
    with pytest.raises(ConfigError, match="batches of one"):
        EarlyExitInference(model, [1.0])(samples)
    with pytest.raises(ConfigError, match="label"):
        EarlyExitInference(model, [1.0], rule="ce")
    with pytest.raises(ConfigError, match="has 2 value.*1 early exit"):
        EarlyExitInference(model, [1.0, 2.0])
    with pytest.raises(ConfigError, match="early exits"):
        EarlyExitInference(create_model("resnet20_cifar"), [1.0])
