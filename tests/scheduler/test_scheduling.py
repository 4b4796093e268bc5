"""The original's scheduling tests (test_infra.test_policy_scheduling, test_loss.py) and windows."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError, ScheduleError
from distiller.scheduler import (
    CompressionScheduler,
    LossComponent,
    PolicyLoss,
    ScheduledTrainingPolicy,
    make_window,
)


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


class Recorder(ScheduledTrainingPolicy):
    """Records every hook call as (hook, epoch or step)."""

    def __init__(self, log: list, tag: str) -> None:
        super().__init__()
        self.log, self.tag = log, tag

    def on_epoch_begin(self, model, zeros_mask_dict, meta, **kwargs):
        self.log.append((self.tag, "begin", meta.get("current_step", meta["current_epoch"])))

    def on_minibatch_begin(
        self, model, epoch, minibatch_id, minibatches_per_epoch, zeros_mask_dict, meta, optimizer=None
    ):
        self.log.append((self.tag, "mb", epoch * minibatches_per_epoch + minibatch_id))

    def on_epoch_end(self, model, zeros_mask_dict, meta, **kwargs):
        self.log.append((self.tag, "end", meta.get("current_step", meta["current_epoch"])))


def test_add_policy_needs_exactly_one_timing_form():
    scheduler = CompressionScheduler(_tiny())
    with pytest.raises(ScheduleError, match="no timing"):
        scheduler.add_policy(ScheduledTrainingPolicy())
    with pytest.raises(ScheduleError, match="mixes"):
        scheduler.add_policy(ScheduledTrainingPolicy(), epochs=[1, 2], starting_epoch=0, ending_epoch=3)
    with pytest.raises(ScheduleError, match="mixes"):
        scheduler.add_policy(ScheduledTrainingPolicy(), starting_epoch=0, ending_epoch=3, ending_step=10)
    assert issubclass(ScheduleError, ConfigError)


def test_epochs_list_metadata_matches_the_original():
    scheduler = CompressionScheduler(_tiny())
    policy = ScheduledTrainingPolicy()
    scheduler.add_policy(policy, epochs=[1, 2, 3])
    meta = scheduler.sched_metadata[policy]
    assert (meta["starting_epoch"], meta["ending_epoch"], meta["frequency"]) == (1, 4, None)
    single = ScheduledTrainingPolicy()
    scheduler.add_policy(single, epochs=[5])
    meta = scheduler.sched_metadata[single]
    assert (meta["starting_epoch"], meta["ending_epoch"], meta["frequency"]) == (5, 6, None)
    assert scheduler.policies[1] == [policy] and scheduler.policies[5] == [single]


def test_window_metadata_and_firings():
    scheduler = CompressionScheduler(_tiny())
    policy = ScheduledTrainingPolicy()
    entry = scheduler.add_policy(policy, starting_epoch=2, ending_epoch=9, frequency=3)
    assert scheduler.sched_metadata[policy] == {"starting_epoch": 2, "ending_epoch": 9, "frequency": 3}
    assert entry.window.firings() == [2, 5, 8] and entry.window.last == 8
    assert sorted(scheduler.policies) == [2, 5, 8]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"starting_epoch": 5, "ending_epoch": 5}, "greater than"),
        ({"starting_epoch": 5, "ending_epoch": 2}, "greater than"),
        ({"starting_epoch": 0, "ending_epoch": 4, "frequency": 0}, ">= 1"),
        ({"starting_epoch": 0, "ending_epoch": 4, "frequency": 5}, "larger than the window"),
        ({"starting_epoch": -1, "ending_epoch": 4}, ">= 0"),
        ({"starting_epoch": 0.5, "ending_epoch": 4}, "integer"),
        ({"starting_epoch": 0}, "lacks 'ending_epoch'"),
        ({"epochs": []}, "empty"),
        ({"epochs": [1, 1]}, "more than once"),
        ({"epochs": [0, 2], "frequency": 2}, "explicit 'epochs' list"),
        ({"starting_step": 3}, "lacks 'ending_step'"),
        ({"starting_step": 3, "ending_step": 3}, "greater than"),
    ],
)
def test_bad_timing_raises_schedule_error_with_a_fix(kwargs, message):
    with pytest.raises(ScheduleError, match=message) as info:
        make_window(**kwargs)
    assert "Fix" in str(info.value) or "must be" in str(info.value)


def test_same_policy_object_in_two_windows_fires_in_both():
    log: list = []
    scheduler = CompressionScheduler(_tiny())
    policy = Recorder(log, "x")
    scheduler.add_policy(policy, epochs=[0])
    scheduler.add_policy(policy, epochs=[2])
    for epoch in range(3):
        scheduler.on_epoch_begin(epoch)
    assert log == [("x", "begin", 0), ("x", "begin", 2)]


class DummyLossPolicy(ScheduledTrainingPolicy):
    def __init__(self, idx: int) -> None:
        super().__init__()
        self.loss_val = torch.randint(0, 10000, (1,))
        self.idx = idx

    def before_backward_pass(
        self, model, epoch, minibatch_id, minibatches_per_epoch, loss, zeros_mask_dict, optimizer=None
    ):
        return PolicyLoss(loss + self.loss_val, [LossComponent("Dummy Loss " + str(self.idx), self.loss_val)])


@pytest.mark.parametrize("check_loss_components", [False, True])
def test_multiple_policies_loss(check_loss_components):
    scheduler = CompressionScheduler(nn.Module(), device=torch.device("cpu"))
    expected_overall = 0
    expected_losses = []
    for i in range(3):
        policy = DummyLossPolicy(i)
        expected_overall += policy.loss_val
        expected_losses.append(policy.loss_val)
        scheduler.add_policy(policy, epochs=[0])
    main_loss = torch.randint(0, 10000, (1,))
    expected_overall += main_loss
    main_loss_before = deepcopy(main_loss)
    result = scheduler.before_backward_pass(0, 0, 1, main_loss, return_loss_components=check_loss_components)
    assert main_loss_before == main_loss
    if check_loss_components:
        assert expected_overall == result.overall_loss
        assert [lc.name for lc in result.loss_components] == ["Dummy Loss 0", "Dummy Loss 1", "Dummy Loss 2"]
        for idx, lc in enumerate(result.loss_components):
            assert expected_losses[idx] == lc.value.item()
    else:
        assert expected_overall == result


def test_bad_policy_loss_is_a_type_error():
    class Bad(ScheduledTrainingPolicy):
        def before_backward_pass(self, *args, **kwargs):
            return 3.0

    scheduler = CompressionScheduler(_tiny())
    scheduler.add_policy(Bad(), epochs=[0])
    with pytest.raises(TypeError, match="PolicyLoss"):
        scheduler.before_backward_pass(0, 0, 1, torch.tensor(1.0))


def test_policies_fire_in_declaration_order_with_lr_last():
    from distiller.scheduler import LRPolicy

    model = _tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    log: list = []

    class LoggingLR(LRPolicy):
        def on_epoch_begin(self, model, zeros_mask_dict, meta, **kwargs):
            log.append(("lr", "begin", meta["current_epoch"]))

    scheduler = CompressionScheduler(model)
    scheduler.add_policy(LoggingLR(torch.optim.lr_scheduler.StepLR(optimizer, 1)), starting_epoch=0, ending_epoch=2)
    scheduler.add_policy(Recorder(log, "a"), starting_epoch=0, ending_epoch=2)
    scheduler.add_policy(Recorder(log, "b"), epochs=[1])
    scheduler.on_epoch_begin(0)
    scheduler.on_epoch_begin(1)
    assert log == [("a", "begin", 0), ("lr", "begin", 0), ("a", "begin", 1), ("b", "begin", 1), ("lr", "begin", 1)]


def test_step_window_fires_as_one_minibatch_epochs():
    log: list = []
    scheduler = CompressionScheduler(_tiny())
    scheduler.add_policy(Recorder(log, "s"), starting_step=3, ending_step=9, step_frequency=2)
    for epoch in range(3):
        for mb in range(4):
            scheduler.on_minibatch_begin(epoch, mb, 4)
            scheduler.on_minibatch_end(epoch, mb, 4)
        scheduler.on_epoch_end(epoch)
    assert log == [
        ("s", "begin", 3),
        ("s", "mb", 3),
        ("s", "end", 3),
        ("s", "begin", 5),
        ("s", "mb", 5),
        ("s", "end", 5),
        ("s", "begin", 7),
        ("s", "mb", 7),
        ("s", "end", 7),
    ]


def test_old_style_policy_without_kwargs_still_gets_called():
    calls = []

    class Old(ScheduledTrainingPolicy):
        def on_epoch_end(self, model, zeros_mask_dict, meta):  # no **kwargs, as in the original's KD policy
            calls.append(meta["current_epoch"])

    scheduler = CompressionScheduler(_tiny())
    scheduler.add_policy(Old(), epochs=[0])
    scheduler.on_epoch_end(0, None, metrics={"min": 1.0, "max": 50.0})
    assert calls == [0]


def test_masks_are_reapplied_after_every_step_even_outside_windows():
    torch.manual_seed(0)
    model = _tiny()
    scheduler = CompressionScheduler(model)
    mask = torch.ones(3, 4)
    mask[:, :2] = 0
    scheduler.masks["0.weight"] = mask
    scheduler.masks["module.2.weight"].mask = torch.zeros(2, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for step in range(3):
        loss = model(torch.randn(8, 4)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        scheduler.on_minibatch_end(7, step, 3, opt)
    assert torch.count_nonzero(model[0].weight[:, :2]) == 0
    assert torch.count_nonzero(model[2].weight) == 0
    assert torch.count_nonzero(model[0].weight[:, 2:]) == 6


def test_forward_only_masks_are_not_reapplied_after_the_step():
    model = _tiny()
    scheduler = CompressionScheduler(model)
    masker = scheduler.masks["0.weight"]
    masker.mask = torch.zeros(3, 4)
    masker.mask_on_forward_only = True
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    scheduler.on_minibatch_end(0, 0, 1)
    assert torch.all(model[0].weight == 1.0)
    scheduler.apply_mask(is_forward=True)
    assert torch.all(model[0].weight == 0.0)


def test_device_as_second_positional_argument_still_works():
    scheduler = CompressionScheduler(_tiny(), "cpu")
    assert scheduler.device == torch.device("cpu") and "0.weight" in scheduler.masks


def test_policy_written_for_the_original_without_optimizer_argument():
    class OldLoss(ScheduledTrainingPolicy):
        def before_backward_pass(self, model, epoch, minibatch_id, minibatches_per_epoch, loss, zeros_mask_dict):
            return PolicyLoss(loss * 2, [])

    scheduler = CompressionScheduler(_tiny())
    scheduler.add_policy(OldLoss(), epochs=[0])
    assert scheduler.before_backward_pass(0, 0, 1, torch.tensor(1.5), optimizer=None).item() == 3.0


def test_window_descriptions():
    assert make_window(starting_epoch=0, ending_epoch=30, frequency=2).describe() == (
        "epochs 0-28 every 2 (15 times, until 30)"
    )
    assert make_window(starting_epoch=0, ending_epoch=400).describe() == "epochs 0-399 (400 times)"
    assert make_window(epochs=[30, 10]).describe() == "epochs [10, 30]"
    assert make_window(starting_epoch=5, ending_epoch=6).describe().startswith("epoch 5")
