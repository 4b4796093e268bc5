"""Masker/MaskSet: hard vs soft pruning under SGD momentum + weight decay, double copies,
gradient masking, regularization masks, and state round trips with ``module.`` names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.sparsity import Masker, MaskSet, level_mask, structure_level_mask


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))


def _masks(model: nn.Module) -> MaskSet:
    masks = MaskSet.for_model(model)
    masks["0.weight"].mask = structure_level_mask(model[0].weight, 0.5, "Filters")
    masks["3.weight"].mask = level_mask(model[3].weight, 0.7)
    return masks


def _train(model: nn.Module, masks: MaskSet, steps: int = 5, double_copies: bool = False) -> None:
    """A training loop with the scheduler's mask calls (minibatch begin / before step / end)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 3, 6, 6, generator=gen)
        y = torch.randint(0, 5, (4,), generator=gen)
        masks.apply(model, is_forward=True)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if double_copies:
            masks.revert_weights(model)
        opt.step()
        masks.apply(model, is_forward=False)


def _pruned_values(model: nn.Module, masks: MaskSet) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[n][m == 0].detach() for n, m in masks.masked().items()])


def test_for_model_one_masker_per_parameter_with_canonical_names():
    wrapped = nn.DataParallel(_model())
    masks = MaskSet.for_model(wrapped)
    assert sorted(masks) == sorted(n for n, _ in _model().named_parameters())
    assert all(m.mask is None for m in masks.values())
    assert masks["module.0.weight"] is masks["0.weight"]
    assert "module.3.bias" in masks and "nope" not in masks


def test_hard_mask_survives_momentum_and_weight_decay():
    model = _model()
    masks = _masks(model)
    _train(model, masks)
    assert torch.count_nonzero(_pruned_values(model, masks)) == 0
    # The pruned structure really is whole filters.
    assert (model[0].weight.detach().flatten(1).abs().sum(1) == 0).sum() == 4


def test_soft_mask_lets_the_optimizer_revive_weights():
    model = _model()
    masks = _masks(model)
    for masker in masks.values():
        masker.mask_on_forward_only = True
    _train(model, masks)
    assert torch.count_nonzero(_pruned_values(model, masks)) > 0


def test_wrapped_model_is_masked_through_canonical_names():
    model = _model()
    masks = _masks(model)
    wrapped = nn.DataParallel(model)
    _train(wrapped, masks)
    assert torch.count_nonzero(_pruned_values(model, masks)) == 0


def test_double_copies_update_the_unmasked_weights():
    model = _model()
    masks = _masks(model)
    dense_before = model[3].weight.detach().clone()
    for masker in masks.values():
        masker.use_double_copies = True
        masker.mask_on_forward_only = True
    masker = masks["3.weight"]
    masker.apply_mask(model[3].weight)
    # The snapshot holds the unmasked values; the parameter is masked for the forward pass.
    assert torch.equal(masker.unmasked_copy, dense_before)
    assert torch.count_nonzero(model[3].weight[masker.mask == 0]) == 0
    masker.revert_weights(model[3].weight)
    assert torch.equal(model[3].weight.detach(), dense_before)
    _train(model, masks, steps=3, double_copies=True)
    # After training, masked positions kept moving (they are updated from the unmasked copy)...
    pruned = masker.mask == 0
    assert torch.count_nonzero(model[3].weight.detach()[pruned]) > 0
    # ...and the snapshot of the last step is the unmasked weight before that step's update.
    assert masker.unmasked_copy is not None and torch.count_nonzero(masker.unmasked_copy[pruned]) > 0


def test_mask_gradients_zeroes_masked_gradients():
    model = _model()
    masks = _masks(model)
    masker = masks["3.weight"]
    masker.mask_on_forward_only = True
    masker.set_gradient_hook(model[3].weight)
    assert masker.mask_gradients
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    grad = model[3].weight.grad
    assert torch.count_nonzero(grad[masker.mask == 0]) == 0
    assert torch.count_nonzero(grad[masker.mask == 1]) > 0
    masker.remove_gradient_hook()
    model.zero_grad()
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    assert torch.count_nonzero(model[3].weight.grad[masker.mask == 0]) > 0


def test_mask_gradients_needs_mask_on_forward_only():
    model = _model()
    masker = Masker("3.weight", torch.ones_like(model[3].weight))
    with pytest.raises(ConfigError, match="mask_on_forward_only"):
        masker.set_gradient_hook(model[3].weight)


def test_regularization_mask_is_one_shot():
    p = nn.Parameter(torch.ones(4))
    masker = Masker("w", torch.tensor([1.0, 0.0, 1.0, 0.0]))
    masker.is_regularization_mask = True
    masker.apply_mask(p)
    assert p.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert masker.mask is None
    with torch.no_grad():
        p.fill_(2.0)
    masker.apply_mask(p)  # no mask any more: a no-op
    assert p.tolist() == [2.0] * 4


def test_apply_is_in_place_and_keeps_the_parameter_object():
    model = _model()
    masks = _masks(model)
    weight = model[3].weight
    ptr = weight.data_ptr()
    masks.apply(model)
    assert model[3].weight is weight and weight.data_ptr() == ptr


def test_state_dict_round_trip_with_module_prefixed_names():
    model = _model()
    masks = _masks(model)
    state = masks.state_dict()
    assert set(state) == {"masks_dict"}
    assert state["masks_dict"]["0.bias"] is None
    prefixed = {"masks_dict": {f"module.{k}": v for k, v in state["masks_dict"].items()}}
    fresh = MaskSet.for_model(model)
    fresh.load_state_dict(prefixed)
    assert set(fresh) == set(masks)
    for name, masker in masks.items():
        other = fresh[name].mask
        assert (other is None) == (masker.mask is None)
        if other is not None:
            assert torch.equal(other, masker.mask)


def test_load_state_dict_errors():
    masks = MaskSet.for_model(_model())
    with pytest.raises(ConfigError, match="masks_dict"):
        masks.load_state_dict({"masks": {}})
    with pytest.raises(ConfigError, match="unknown parameter"):
        masks.load_state_dict({"masks_dict": {"nope.weight": None}}, strict=True)


def test_checkpoint_round_trip(tmp_path):
    """Masks saved in a checkpoint's ``compression_sched`` come back on load, names canonical."""
    from distiller.checkpoint import load_checkpoint, save_checkpoint

    model = _model()
    masks = _masks(model)
    masks.apply(model)
    (path,) = save_checkpoint(
        tmp_path, model=model, arch=None, dataset=None, epoch=0, scheduler_state=masks.state_dict()
    )
    loaded = load_checkpoint(path, _model())
    fresh = MaskSet.for_model(loaded.model)
    fresh.load_state_dict(loaded.scheduler_state)
    for name in ("0.weight", "3.weight"):
        assert torch.equal(fresh[name].mask, masks[name].mask)
    assert fresh["0.bias"].mask is None
