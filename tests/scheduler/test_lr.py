"""LR schedulers: the original's test_learning_rate.py, PolynomialLR, the registry, LRPolicy stepping."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.optim import Optimizer

from distiller.errors import ConfigError
from distiller.scheduler import LR_SCHEDULERS, CompressionScheduler, LRPolicy, MultiStepMultiGammaLR, PolynomialLR
from distiller.scheduler.lr import build_lr_scheduler, step_lr_scheduler


def _optimizer(lr: float = 0.1) -> Optimizer:
    return torch.optim.SGD([torch.zeros(3, 3, 3, requires_grad=True)], lr=lr)


@pytest.mark.filterwarnings("ignore:The epoch parameter")
def test_multi_step_multi_gamma_lr():
    dummy_tensor = torch.zeros(3, 3, 3, requires_grad=True)
    dummy_optimizer = Optimizer([dummy_tensor], {"lr": 0.1})
    with pytest.raises(ValueError):
        MultiStepMultiGammaLR(dummy_optimizer, milestones=[60, 30, 80], gammas=[0.1, 0.1, 0.2])
    with pytest.raises(ValueError):
        MultiStepMultiGammaLR(dummy_optimizer, milestones=[30, 60], gammas=[0.1, 0.1, 0.2])
    with pytest.raises(ConfigError):
        MultiStepMultiGammaLR(dummy_optimizer, milestones=[30, 60, 80], gammas=[0.1, 0.1])

    lr_sched = MultiStepMultiGammaLR(dummy_optimizer, milestones=[30, 60, 80], gammas=[0.1, 0.1, 0.2])
    expected_gammas = [1, 1 * 0.1, 1 * 0.1 * 0.1, 1 * 0.1 * 0.1 * 0.2]
    expected_lrs = [0.1 * gamma for gamma in expected_gammas]
    assert lr_sched.multiplicative_gammas == expected_gammas
    for epoch, idx in [(0, 0), (15, 0), (30, 1), (33, 1), (60, 2), (79, 2), (80, 3), (100, 3)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lr_sched.step(epoch)
        assert dummy_optimizer.param_groups[0]["lr"] == expected_lrs[idx], epoch


def test_registry_has_every_torch_scheduler_and_the_originals():
    import inspect

    import torch.optim.lr_scheduler as L

    public = {
        n
        for n, c in vars(L).items()
        if inspect.isclass(c)
        and not n.startswith("_")
        and c.__module__ == L.__name__
        and (issubclass(c, L.LRScheduler) or issubclass(c, L.ReduceLROnPlateau))
        and c is not L.LRScheduler
    }
    assert public <= set(LR_SCHEDULERS.names())
    assert {"StepLR", "MultiStepLR", "ExponentialLR", "ReduceLROnPlateau", "OneCycleLR"} <= public
    assert LR_SCHEDULERS.get("PolynomialLR") is PolynomialLR
    assert LR_SCHEDULERS.get("MultiStepMultiGammaLR") is MultiStepMultiGammaLR


def test_polynomial_lr_is_the_originals_and_accepts_torchs_name():
    opt = _optimizer(1.0)
    sched = PolynomialLR(opt, T_max=10, power=2)
    lrs = []
    for epoch in range(1, 13):
        step_lr_scheduler(sched, epoch)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx((1 - 1 / 10) ** 2)
    assert lrs[4] == pytest.approx(0.25)
    assert lrs[9:] == [0.0, 0.0, 0.0]  # stops at zero past T_max
    assert PolynomialLR(_optimizer(), total_iters=5).T_max == 5
    with pytest.raises(ConfigError, match="T_max"):
        PolynomialLR(_optimizer())


def test_lr_policy_steps_to_the_closed_form_of_the_next_epoch():
    """The original called step(epoch=current + 1): a window starting at 24 jumps to the LR of epoch 25."""
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(
        LRPolicy(torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)), starting_epoch=3, ending_epoch=6
    )
    seen = []
    for epoch in range(8):
        seen.append(opt.param_groups[0]["lr"])
        scheduler.on_epoch_begin(epoch, opt)
        scheduler.on_epoch_end(epoch, opt)
    assert seen == [1.0, 1.0, 1.0, 1.0, 0.5**4, 0.5**5, 0.5**6, 0.5**6]


def test_plateau_gets_the_metric_of_its_mode():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0, factor=0.1)
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(LRPolicy(plateau), starting_epoch=0, ending_epoch=10)
    for epoch, top1 in enumerate([50.0, 60.0, 60.0]):
        scheduler.on_epoch_end(epoch, opt, metrics={"min": 1.0, "max": top1})
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="metrics"):
        scheduler.on_epoch_end(3, opt)


def test_build_lr_scheduler_resumes_without_initial_lr():
    opt = _optimizer(0.5)
    sched = build_lr_scheduler(torch.optim.lr_scheduler.StepLR, opt, last_epoch=4, step_size=3, gamma=0.1)
    assert sched.last_epoch >= 4
    assert all("initial_lr" in g for g in opt.param_groups)


def test_step_window_lr_policy_steps_per_minibatch():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    onecycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=20)
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(LRPolicy(onecycle), starting_step=0, ending_step=19)
    lrs = []
    for epoch in range(2):
        for mb in range(10):
            scheduler.on_minibatch_begin(epoch, mb, 10, opt)
            lrs.append(opt.param_groups[0]["lr"])
            scheduler.on_minibatch_end(epoch, mb, 10, opt)
    assert max(lrs) == pytest.approx(1.0, rel=0.05) and lrs[-1] < 0.05
