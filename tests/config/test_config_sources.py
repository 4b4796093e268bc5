"""YAML text, dict and Python API build the same schedule; order, lines, step windows, KD, a short run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.config import dict_config, load_yaml_text, validate_schedule
from distiller.config.yaml_source import format_path
from distiller.distillation import KnowledgeDistillationPolicy
from distiller.models import create_model
from distiller.pruning import PRUNERS
from distiller.scheduler import CompressionScheduler, LRPolicy, PruningPolicy

FULL_FLOW = """\
# The original's full-flow test 6 (simplenet_mnist) without the thinning step.
version: 1
pruners:
  filter_pruner:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.1
    weights: [module.conv1.weight]
  conv2_agp:
    class: L1RankedStructureParameterPruner_AGP
    initial_sparsity: 0.05
    final_sparsity: 0.20
    group_type: Filters
    weights: [conv2.weight]
  fc2_agp:
    class: AutomatedGradualPruner
    initial_sparsity: 0.02
    final_sparsity: 0.15
    weights: [fc2.weight]
lr_schedulers:
  lr:
    class: StepLR
    step_size: 1
    gamma: 0.5
policies:
  - pruner:
      instance_name: filter_pruner
    epochs: [0, 1]
  - pruner:
      instance_name: conv2_agp
    starting_epoch: 0
    ending_epoch: 2
    frequency: 1
  - pruner:
      instance_name: fc2_agp
    starting_epoch: 0
    ending_epoch: 2
    frequency: 1
  - lr_scheduler:
      instance_name: lr
    starting_epoch: 0
    ending_epoch: 3
    frequency: 1
"""


def _data(n: int = 3):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(n)]


def _run(model, scheduler, optimizer, epochs, data):
    crit = nn.CrossEntropyLoss()
    model.train()
    for epoch in epochs:
        scheduler.on_epoch_begin(epoch, optimizer)
        for i, (x, y) in enumerate(data):
            scheduler.on_minibatch_begin(epoch, i, len(data), optimizer)
            loss = crit(model(x), y)
            out = scheduler.before_backward_pass(
                epoch, i, len(data), loss, optimizer, return_loss_components=True, targets=y
            )
            optimizer.zero_grad()
            out.overall_loss.backward()
            scheduler.before_parameter_optimization(epoch, i, len(data), optimizer)
            optimizer.step()
            scheduler.on_minibatch_end(epoch, i, len(data), optimizer)
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": loss.item(), "max": 10.0})


def _filter_sparsity(w: torch.Tensor) -> float:
    return float((w.flatten(1).abs().sum(1) == 0).float().mean())


def test_yaml_keeps_order_and_lines():
    source = load_yaml_text(FULL_FLOW, "ff.yaml")
    assert list(source.data["pruners"]) == ["filter_pruner", "conv2_agp", "fc2_agp"]
    assert source.line(("pruners", "conv2_agp", "final_sparsity")) == 12
    assert source.line(("policies", 1, "pruner", "instance_name")) == 30
    assert source.line(("policies", 1, "no", "such", "key")) == 29
    assert format_path(("pruners", "p", "sensitivities", "module.conv1.weight")) == (
        "pruners.p.sensitivities['module.conv1.weight']"
    )


def test_full_flow_schedule_meets_its_sparsities():
    torch.manual_seed(0)
    model = create_model("simplenet_mnist")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    plan = validate_schedule(load_yaml_text(FULL_FLOW, "ff.yaml").data, model, opt)
    _run(model, plan.scheduler, opt, range(3), _data())
    assert _filter_sparsity(model.conv1.weight) == pytest.approx(0.10)
    assert _filter_sparsity(model.conv2.weight) == pytest.approx(0.20)
    fc2 = model.fc2.weight
    assert 1 - torch.count_nonzero(fc2).item() / fc2.numel() == pytest.approx(0.15, abs=0.002)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**3)


def test_dict_and_python_api_build_the_same_schedule():
    data = load_yaml_text(FULL_FLOW, "ff.yaml").data
    torch.manual_seed(0)
    m1 = create_model("simplenet_mnist")
    m2 = create_model("simplenet_mnist")
    m2.load_state_dict(m1.state_dict())
    o1 = torch.optim.SGD(m1.parameters(), lr=0.05)
    o2 = torch.optim.SGD(m2.parameters(), lr=0.05)
    s1 = dict_config(m1, o1, data)

    s2 = CompressionScheduler(m2)
    filters = PRUNERS.get("L1RankedStructureParameterPruner")(
        "filter_pruner", group_type="Filters", desired_sparsity=0.1, weights=["conv1.weight"]
    )
    conv2 = PRUNERS.get("L1RankedStructureParameterPruner_AGP")(
        "conv2_agp", initial_sparsity=0.05, final_sparsity=0.2, group_type="Filters", weights=["conv2.weight"]
    )
    fc2 = PRUNERS.get("AutomatedGradualPruner")(
        "fc2_agp", initial_sparsity=0.02, final_sparsity=0.15, weights=["fc2.weight"]
    )
    s2.add_policy(PruningPolicy(filters, None), epochs=[0, 1])
    s2.add_policy(PruningPolicy(conv2, None), starting_epoch=0, ending_epoch=2, frequency=1)
    s2.add_policy(PruningPolicy(fc2, None), starting_epoch=0, ending_epoch=2, frequency=1)
    s2.add_policy(
        LRPolicy(torch.optim.lr_scheduler.StepLR(o2, step_size=1, gamma=0.5)), starting_epoch=0, ending_epoch=3
    )
    data_batches = _data(2)
    _run(m1, s1, o1, range(3), data_batches)
    _run(m2, s2, o2, range(3), data_batches)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_step_windows_in_yaml():
    text = """\
pruners:
  p:
    class: AutomatedGradualPruner
    initial_sparsity: 0.1
    final_sparsity: 0.5
    weights: [fc1.weight]
policies:
  - pruner:
      instance_name: p
    starting_step: 2
    ending_step: 6
    step_frequency: 2
"""
    model = create_model("simplenet_mnist")
    plan = validate_schedule(load_yaml_text(text, "steps.yaml").data, model)
    window = plan.policies[0].window
    assert (window.unit, window.firings()) == ("step", [2, 4])
    assert "Step windows: p steps 2-4 every 2 (2 times, until 6)" in plan.describe()
    assert plan.scheduler.sched_metadata[plan.scheduler.entries[0].policy] == {
        "starting_step": 2,
        "ending_step": 6,
        "step_frequency": 2,
    }
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    _run(model, plan.scheduler, opt, range(2), _data(3))
    assert plan.scheduler.masks["fc1.weight"].mask is not None


def test_knowledge_distillation_from_yaml_combined_with_pruning():
    text = """\
pruners:
  p:
    class: AutomatedGradualPruner
    initial_sparsity: 0.1
    final_sparsity: 0.3
    weights: [fc1.weight]
distillation:
  kd:
    class: KnowledgeDistillation
    teacher_arch: simplenet_mnist
    temperature: 4.0
    distill_weight: 0.7
    student_weight: 0.3
    teacher_weight: 0.1
policies:
  - pruner:
      instance_name: p
    starting_epoch: 0
    ending_epoch: 2
  - distillation:
      instance_name: kd
    starting_epoch: 0
    ending_epoch: 2
"""
    model = create_model("simplenet_mnist")
    plan = validate_schedule(load_yaml_text(text, "kd.yaml").data, model)
    kd = plan.scheduler.entries[1].policy
    assert isinstance(kd, KnowledgeDistillationPolicy) and kd.temperature == 4.0
    assert [p.instance_name for p in plan.fires_at(1)] == ["p", "kd"]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    _run(model, plan.scheduler, opt, range(2), _data(2))
    assert plan.scheduler.masks["fc1.weight"].mask is not None


def test_kd_configuration_errors_are_config_errors():
    from distiller.errors import ConfigError

    model = create_model("simplenet_mnist")
    base = {
        "distillation": {"kd": {"class": "KnowledgeDistillation", "teacher_arch": "resnet9000"}},
        "policies": [{"distillation": {"instance_name": "kd"}, "epochs": [0]}],
    }
    with pytest.raises(ConfigError, match=r"distillation.kd.*resnet9000"):
        validate_schedule(base, model)
    base["distillation"]["kd"] = {
        "class": "KnowledgeDistillation",
        "teacher_arch": "simplenet_mnist",
        "distill_weight": -1,
    }
    with pytest.raises(ConfigError, match="distill_weight"):
        validate_schedule(base, model)


def test_exponent_without_dot_is_a_float():
    """PyYAML (YAML 1.1) reads 1e-4 as a string; a schedule's eta_min: 1e-5 must reach the class as a number."""
    import yaml

    source = load_yaml_text(
        "lr_schedulers:\n  lr:\n    class: CosineAnnealingLR\n    T_max: 10\n    eta_min: 1e-5\n", "x"
    )
    assert source.data["lr_schedulers"]["lr"]["eta_min"] == 1e-5
    assert yaml.safe_load("a: 1e-4") == {"a": "1e-4"}  # the global SafeLoader is untouched
    model = create_model("simplenet_mnist")
    plan = validate_schedule(
        {**source.data, "policies": [{"lr_scheduler": {"instance_name": "lr"}, "epochs": [0]}]}, model
    )
    assert plan.scheduler.entries[0].policy.lr_scheduler.eta_min == 1e-5


def test_resume_from_a_yaml_schedule_is_bit_exact(tmp_path):
    import io

    text = FULL_FLOW.replace("ending_epoch: 2", "ending_epoch: 4").replace("epochs: [0, 1]", "epochs: [0, 2]")
    path = tmp_path / "ff.yaml"
    path.write_text(text)
    data = _data(2)

    def fresh():
        torch.manual_seed(0)
        model = create_model("simplenet_mnist")
        return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)

    from distiller.config import file_config

    model, opt = fresh()
    scheduler = file_config(model, opt, path)
    _run(model, scheduler, opt, range(2), data)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": scheduler.state_dict()}, buf)
    _run(model, scheduler, opt, range(2, 5), data)

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model2, opt2 = fresh()
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    scheduler2 = file_config(model2, opt2, path, resumed_epoch=1)
    scheduler2.load_state_dict(ckpt["sched"])
    _run(model2, scheduler2, opt2, range(2, 5), data)
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name
    for name, masker in scheduler.masks.items():
        other = scheduler2.masks[name].mask
        assert (masker.mask is None) == (other is None) and (other is None or torch.equal(masker.mask, other))
    assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]
