"""Pruning, regularization and quantization policies, and resuming a schedule exactly."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.pruning import PRUNERS
from distiller.regularization import REGULARIZERS
from distiller.scheduler import (
    CompressionScheduler,
    LRPolicy,
    PruningPolicy,
    QuantizationPolicy,
    RegularizationPolicy,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def _data(n: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def _train(model, scheduler, optimizer, epochs, data=None):
    data = data or _data()
    crit = nn.CrossEntropyLoss()
    for epoch in epochs:
        scheduler.on_epoch_begin(epoch, optimizer)
        for i, (x, y) in enumerate(data):
            scheduler.on_minibatch_begin(epoch, i, len(data), optimizer)
            loss = crit(model(x), y)
            loss = scheduler.before_backward_pass(epoch, i, len(data), loss, optimizer)
            optimizer.zero_grad()
            loss.backward()
            scheduler.before_parameter_optimization(epoch, i, len(data), optimizer)
            optimizer.step()
            scheduler.on_minibatch_end(epoch, i, len(data), optimizer)
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": loss.item(), "max": 0.0})


def _sparsity(t: torch.Tensor) -> float:
    return 1.0 - float(torch.count_nonzero(t)) / t.numel()


def _build(model, optimizer):
    scheduler = CompressionScheduler(model)
    agp = PRUNERS.get("AutomatedGradualPruner")("agp", initial_sparsity=0.1, final_sparsity=0.6, weights=["4.weight"])
    sens = PRUNERS.get("SensitivityPruner")("sens", sensitivities={"0.weight": 0.5})
    scheduler.add_policy(PruningPolicy(agp, None), starting_epoch=0, ending_epoch=4, frequency=1, name="agp")
    scheduler.add_policy(PruningPolicy(sens, None), epochs=[0, 2], name="sens")
    lr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    scheduler.add_policy(LRPolicy(lr), starting_epoch=0, ending_epoch=10, name="lr")
    return scheduler


def test_agp_policy_reaches_the_final_sparsity_and_masks_survive_momentum():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    scheduler = _build(model, opt)
    _train(model, scheduler, opt, range(5))
    assert _sparsity(model[4].weight) == pytest.approx(0.6, abs=0.01)
    assert _sparsity(model[0].weight) > 0.2
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**5)


def test_resume_reproduces_masks_weights_and_lr_bit_for_bit():
    data = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = _build(model, opt)
    _train(model, scheduler, opt, range(2), data)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": scheduler.state_dict()}, buf)
    _train(model, scheduler, opt, range(2, 4), data)

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)  # the state is plain data and tensors only
    model2 = _model()
    model2.load_state_dict(ckpt["model"])
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ckpt["opt"])
    scheduler2 = _build(model2, opt2)
    scheduler2.load_state_dict(ckpt["sched"])
    _train(model2, scheduler2, opt2, range(2, 4), data)

    for (n, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), n
    for name, masker in scheduler.masks.items():
        other = scheduler2.masks[name].mask
        assert (masker.mask is None and other is None) or torch.equal(masker.mask, other)
    assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]
    # the sensitivity pruner's std (measured once on the dense weights) came back with the state
    assert ckpt["sched"]["policies"][1]["state"]["pruner"]["stds"]


def test_state_loaded_before_the_schedule_is_built_is_applied_when_policies_are_added():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = _build(model, opt)
    _train(model, scheduler, opt, range(2))
    state = scheduler.state_dict()
    opt2 = torch.optim.SGD(_model().parameters(), lr=0.1)
    fresh = CompressionScheduler(_model())
    fresh.load_state_dict(state)
    lr = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    fresh.add_policy(
        PruningPolicy(PRUNERS.get("AutomatedGradualPruner")("agp", 0.1, 0.6, ["4.weight"])),
        starting_epoch=0,
        ending_epoch=4,
        name="agp",
    )
    fresh.add_policy(
        PruningPolicy(PRUNERS.get("SensitivityPruner")("sens", {"0.weight": 0.5})), epochs=[0, 2], name="sens"
    )
    fresh.add_policy(LRPolicy(lr), starting_epoch=0, ending_epoch=10, name="lr")
    assert lr.last_epoch == 2 and opt2.param_groups[0]["lr"] == pytest.approx(0.025)


def test_old_masks_only_state_still_loads():
    model = _model()
    scheduler = CompressionScheduler(model)
    mask = torch.zeros_like(model[4].weight)
    scheduler.load_state_dict({"masks_dict": {"module.4.weight": mask, "0.weight": None}})
    assert torch.count_nonzero(model[4].weight) == 0
    assert set(scheduler.state_dict()) == {"masks_dict", "policies", "version"}
    with pytest.raises(ConfigError, match="masks_dict"):
        scheduler.load_state_dict({"state": 1})


@pytest.mark.parametrize(
    "args, message",
    [
        ({"keep_masks": True}, "Unknown pruning-policy argument 'keep_masks'"),
        ({"mask_gradients": True}, "mask_on_forward_only"),
        ({"mini_batch_pruning_frequency": "often"}, "must be int"),
        ({"keep_mask": 1}, "must be bool"),
    ],
)
def test_bad_pruning_policy_args(args, message):
    with pytest.raises(ConfigError, match=message):
        PruningPolicy(object(), args)


def test_soft_pruning_with_double_copies_and_gradient_masks():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = CompressionScheduler(model)
    level = PRUNERS.get("SparsityLevelParameterPruner")("lvl", levels={"4.weight": 0.5})
    args = {"mask_on_forward_only": True, "use_double_copies": True, "mask_gradients": True, "keep_mask": True}
    scheduler.add_policy(PruningPolicy(level, args), starting_epoch=0, ending_epoch=2)
    masker = scheduler.masks["4.weight"]
    _train(model, scheduler, opt, [0])
    assert masker.mask_on_forward_only and masker.backward_hook_handle is not None
    # with double copies the optimizer updated the unmasked weights: they are not zero after the step
    assert _sparsity(model[4].weight) < 0.5
    _train(model, scheduler, opt, [1])
    # keep_mask at the last epoch: the mask becomes permanent and the hook is gone
    assert not masker.mask_on_forward_only and masker.backward_hook_handle is None
    assert _sparsity(model[4].weight) == pytest.approx(0.5, abs=0.01)


def test_mini_batch_pruning_frequency_and_discard_masks():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    class Counting:
        name = "counting"

        def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
            if param_name == "4.weight":
                calls.append(meta["current_epoch"])
                zeros_mask_dict[param_name].mask = torch.ones_like(param)

    scheduler = CompressionScheduler(model)
    args = {"mini_batch_pruning_frequency": 2, "discard_masks_at_minibatch_end": True}
    scheduler.add_policy(PruningPolicy(Counting(), args), starting_epoch=0, ending_epoch=1)
    _train(model, scheduler, opt, [0], _data(4))
    assert calls == [0, 0]  # epoch begin + global minibatch 2
    assert scheduler.masks["4.weight"].mask is None


def test_skip_first_minibatch_prunes_at_the_second():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    level = PRUNERS.get("SparsityLevelParameterPruner")("lvl", levels={"4.weight": 0.5})
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(PruningPolicy(level, {"skip_first_minibatch": True}), starting_epoch=0, ending_epoch=1)
    scheduler.on_epoch_begin(0, opt)
    assert scheduler.masks["4.weight"].mask is None
    scheduler.on_minibatch_begin(0, 1, 4, opt)
    assert scheduler.masks["4.weight"].mask is not None


def test_fold_batchnorm_ranks_the_folded_weights():
    model = _model()
    with torch.no_grad():
        model[1].running_var.copy_(torch.tensor([1.0, 1e4, 1.0, 1.0]))  # filter 1 shrinks once folded
    seen = {}

    class Spy:
        name = "spy"

        def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
            seen[param_name] = param.detach().clone()

    scheduler = CompressionScheduler(model)
    scheduler.add_policy(PruningPolicy(Spy(), {"fold_batchnorm": True}), epochs=[0])
    scheduler.on_epoch_begin(0)
    ratio = (seen["0.weight"] / model[0].weight.detach()).flatten(1).mean(1).tolist()
    assert ratio[1] == pytest.approx(0.01, rel=1e-3) and ratio[0] == pytest.approx(1.0, rel=1e-3)
    assert torch.equal(seen["4.weight"], model[4].weight)


def test_regularization_policy_adds_a_named_loss_and_keeps_threshold_masks():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    reg = REGULARIZERS.get("GroupLassoRegularizer")(
        "gl", model, {"0.weight": [10.0, "Filters"]}, threshold_criteria="Mean_Abs"
    )
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(RegularizationPolicy(reg, keep_mask=True), starting_epoch=0, ending_epoch=2)
    scheduler.on_epoch_begin(0, opt)
    out = scheduler.before_backward_pass(0, 0, 1, torch.tensor(1.0), opt, return_loss_components=True)
    assert out.loss_components[0].name == "GroupLassoRegularizer_loss"
    assert out.overall_loss.item() == pytest.approx(1.0 + out.loss_components[0].value.item())
    _train(model, scheduler, opt, [0, 1])
    assert scheduler.masks["0.weight"].mask is not None  # the last minibatch's mask was kept
    assert not scheduler.masks["0.weight"].is_regularization_mask
    with pytest.raises(ConfigError):
        RegularizationPolicy(reg, keep_mask="yes")


def test_quantization_policy_prepares_when_it_first_fires():
    calls = []

    class FakeQuantizer:
        def prepare_model(self):
            calls.append("prepare")

        def quantize_params(self):
            calls.append("quantize")

    model = _model()
    scheduler = CompressionScheduler(model)
    policy = QuantizationPolicy(FakeQuantizer())
    scheduler.add_policy(policy, starting_epoch=1, ending_epoch=3)
    assert calls == []
    scheduler.on_epoch_begin(0)
    assert calls == []
    scheduler.on_epoch_begin(1)
    scheduler.on_minibatch_end(1, 0, 1)
    scheduler.on_epoch_begin(2)
    assert calls == ["prepare", "quantize", "quantize"]
