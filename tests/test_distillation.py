"""Knowledge distillation: the loss formula, gradients, the teacher-vs-labels term, scheduling, YAML class."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from distiller.distillation import (
    DISTILLERS,
    DistillationLossWeights,
    KnowledgeDistillationPolicy,
    build_kd_policy,
    distillation_loss,
)
from distiller.errors import ConfigError
from distiller.scheduler import CompressionScheduler


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))


def _batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(5, 6, generator=g), torch.randint(0, 4, (5,), generator=g)


def test_loss_is_the_weighted_sum_with_t_squared():
    student, teacher = _net(0), _net(1)
    x, y = _batch()
    T = 3.0
    policy = build_kd_policy(student, teacher, temperature=T, distill_wt=0.7, student_wt=0.3)
    scheduler = CompressionScheduler(student)
    scheduler.add_policy(policy, starting_epoch=0, ending_epoch=2)
    scheduler.on_epoch_begin(0)
    scheduler.on_minibatch_begin(0, 0, 1)
    student.train()
    out = student(x)  # a plain forward: the hook runs the teacher
    ce = F.cross_entropy(out, y)
    result = scheduler.before_backward_pass(0, 0, 1, ce, return_loss_components=True)
    with torch.no_grad():
        t = teacher(x)
    kl = F.kl_div(F.log_softmax(out / T, dim=1), F.softmax(t / T, dim=1), reduction="sum") / x.shape[0]
    expected = 0.3 * ce + 0.7 * T * T * kl
    assert result.overall_loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert result.loss_components[0].name == "Distill Loss"
    assert result.loss_components[0].value.item() == pytest.approx((T * T * kl).item(), rel=1e-6)


def test_distillation_term_reaches_the_student_and_not_the_teacher():
    student, teacher = _net(0), _net(1)
    x, y = _batch()
    policy = build_kd_policy(student, teacher, temperature=2.0, distill_wt=1.0, student_wt=0.0)
    scheduler = CompressionScheduler(student)
    scheduler.add_policy(policy, epochs=[0])
    scheduler.on_epoch_begin(0)
    student.train()
    loss = scheduler.before_backward_pass(0, 0, 1, F.cross_entropy(policy.forward(x), y))
    loss.backward()
    assert student[0].weight.grad is not None and student[0].weight.grad.abs().sum() > 0
    assert teacher[0].weight.grad is None
    assert not teacher.training


def test_inactive_outside_its_window_and_in_eval_mode():
    student, teacher = _net(0), _net(1)
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    policy = build_kd_policy(student, teacher)
    scheduler = CompressionScheduler(student)
    scheduler.add_policy(policy, starting_epoch=1, ending_epoch=2)
    x, y = _batch()
    scheduler.on_epoch_begin(0)
    student.train()
    loss = F.cross_entropy(student(x), y)
    assert scheduler.before_backward_pass(0, 0, 1, loss) is loss
    scheduler.on_epoch_begin(1)
    student.eval()
    student(x)  # validation inside the epoch: no teacher run
    assert calls == []
    student.train()
    student(x)
    assert calls == [1]
    scheduler.on_epoch_end(1)
    student(x)
    assert calls == [1]


def test_teacher_vs_labels_weight_trains_the_teacher():
    student, teacher = _net(0), _net(1)
    x, y = _batch()
    policy = build_kd_policy(student, teacher, temperature=1.0, distill_wt=0.5, student_wt=0.5, teacher_wt=0.4)
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    scheduler = CompressionScheduler(student)
    scheduler.add_policy(policy, epochs=[0])
    before = teacher[0].weight.detach().clone()
    scheduler.on_epoch_begin(0, opt)
    student.train()
    out = student(x)
    with pytest.raises(ConfigError, match="targets"):
        scheduler.before_backward_pass(0, 0, 1, F.cross_entropy(out, y), opt)
    out = student(x)
    res = scheduler.before_backward_pass(0, 0, 1, F.cross_entropy(out, y), opt, return_loss_components=True, targets=y)
    assert [c.name for c in res.loss_components] == ["Distill Loss", "Teacher Loss"]
    opt.zero_grad()
    res.overall_loss.backward()
    scheduler.before_parameter_optimization(0, 0, 1, opt)
    opt.step()
    assert not torch.equal(before, teacher[0].weight)
    assert "teacher" in policy.state_dict()


def test_original_scaling_can_be_restored():
    s = torch.randn(4, 3)
    t = torch.randn(4, 3)
    assert distillation_loss(s, t, 2.0, scale_by_t_squared=False).item() == pytest.approx(
        distillation_loss(s, t, 2.0).item() / 4
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [({"temperature": 0}, "temperature"), ({"loss_weights": (-1, 0.5, 0)}, "distill weight")],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        KnowledgeDistillationPolicy(_net(0), _net(1), **kwargs)


def test_yaml_class_builds_the_teacher_from_the_zoo():
    from distiller.models import create_model

    student = create_model("simplenet_mnist")
    cls = DISTILLERS.get("KnowledgeDistillation")
    kd = cls(student, teacher_arch="simplenet_mnist", temperature=4.0, distill_weight=0.7, student_weight=0.3)
    assert kd.loss_wts == DistillationLossWeights(0.7, 0.3, 0.0) and kd.teacher.arch == "simplenet_mnist"
    with pytest.raises(ConfigError, match="does not exist"):
        cls(student, teacher_arch="simplenet_mnist", teacher_checkpoint="/nonexistent/teacher.pth.tar")
