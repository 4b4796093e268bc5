"""Lottery tickets from states and checkpoints, and the magnitude pruning of IMP rounds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.checkpoint import read_checkpoint, save_checkpoint
from distiller.errors import CheckpointError, ConfigError
from distiller.lottery import (
    global_magnitude_masks,
    layerwise_magnitude_masks,
    make_ticket,
    masks_from_zeros,
    masks_sparsity,
    output_layer_weight,
    prunable_weights,
    prune_round_masks,
    save_ticket,
    ticket_from_checkpoints,
)
from distiller.models import create_model
from distiller.scheduler import CompressionScheduler


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def _trained_and_masks(init: nn.Module) -> tuple[dict, dict]:
    """A 'trained' state (init moved randomly) and masks pruning half of each weight."""
    torch.manual_seed(1)
    trained = {k: v + torch.randn_like(v) if v.is_floating_point() else v for k, v in init.state_dict().items()}
    masks = {k: (torch.rand_like(trained[k]) > 0.5).float() for k in ("0.weight", "3.weight")}
    masks["0.bias"] = None
    for name, mask in masks.items():
        if mask is not None:
            trained[name] = trained[name] * mask
    return trained, masks


def test_ticket_is_the_initialization_under_the_trained_masks():
    init = _net()
    trained, masks = _trained_and_masks(init)
    ticket = make_ticket(trained, init, masks)
    assert set(ticket.masks) == {"0.weight", "3.weight"}
    init_state = init.state_dict()
    for name, value in ticket.state_dict.items():
        mask = ticket.masks.get(name)
        if mask is None:
            assert torch.equal(value, init_state[name]), name  # biases, BN parameters and statistics
        else:
            assert torch.equal(mask, masks[name])
            assert torch.equal(value[mask == 1], init_state[name][mask == 1]), name
            assert torch.count_nonzero(value[mask == 0]) == 0
            assert not torch.signbit(value[mask == 0]).any()  # no negative zeros
    assert ticket.sparsity == pytest.approx(masks_sparsity(masks)[0])
    state, ticket_masks = ticket  # a (state_dict, masks) pair
    assert state is ticket.state_dict and ticket_masks is ticket.masks


def test_without_masks_the_trained_zeros_define_them():
    init = _net()
    trained, masks = _trained_and_masks(init)
    inferred = masks_from_zeros(trained)
    assert set(inferred) == {"0.weight", "3.weight"}  # rank > 1 only: never biases or BN
    ticket = make_ticket(trained, init)
    for name in inferred:
        assert torch.equal(ticket.masks[name], masks[name])
    none_given = make_ticket(trained, init, {"0.weight": None})
    assert torch.equal(none_given.masks["3.weight"], masks["3.weight"])


def test_non_binary_masks_keep_every_non_zero_entry():
    init = _net()
    trained, masks = _trained_and_masks(init)
    scaled = {k: None if m is None else m * 1.5 for k, m in masks.items()}
    ticket = make_ticket(trained, init, scaled)
    assert torch.equal(ticket.masks["3.weight"], masks["3.weight"])


def test_mismatched_states_and_masks_are_refused():
    init = _net()
    trained, masks = _trained_and_masks(init)
    other = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    with pytest.raises(CheckpointError, match="shape mismatch: 0.weight"):
        make_ticket(trained, other, masks)
    with pytest.raises(CheckpointError, match="missing in the initial weights"):
        make_ticket(trained, {k: v for k, v in init.state_dict().items() if k != "3.bias"}, masks)
    with pytest.raises(CheckpointError, match="mask of '3.weight' has shape"):
        make_ticket(trained, init, {"3.weight": torch.ones(3)})
    with pytest.raises(CheckpointError, match="'nope.weight'"):
        make_ticket(trained, init, {"nope.weight": torch.ones(3)})


# --- magnitude pruning -------------------------------------------------------------------------


def test_prunable_weights_are_conv_and_linear_weights_in_order():
    model = create_model("simplenet_digits", "digits")
    assert list(prunable_weights(model)) == ["conv1.weight", "conv2.weight", "fc.weight"]
    assert output_layer_weight(model) == "fc.weight"
    with pytest.raises(ConfigError, match="no convolution or linear layer"):
        prunable_weights(nn.Sequential(nn.ReLU()))


def test_global_masks_rank_across_tensors_and_prune_only_alive_weights():
    a = torch.tensor([1.0, -2.0, 3.0, 4.0])
    b = torch.tensor([[0.5, 5.0], [-6.0, 7.0]])
    first = global_magnitude_masks({"a": a, "b": b}, 0.25)  # 2 of 8
    assert first["a"].tolist() == [0, 1, 1, 1] and first["b"].tolist() == [[0, 1], [1, 1]]
    second = global_magnitude_masks({"a": a, "b": b}, 0.5, first)  # 3 of the 6 alive
    assert second["a"].tolist() == [0, 0, 0, 0] and second["b"].tolist() == [[0, 1], [1, 1]]
    assert masks_sparsity(second)[1:] == (5, 8)


def test_layerwise_masks_prune_each_tensor_alike():
    a = torch.arange(1.0, 11.0)
    b = -torch.arange(1.0, 101.0)
    masks = layerwise_magnitude_masks({"a": a, "b": b}, 0.2)
    assert int((masks["a"] == 0).sum()) == 2 and int((masks["b"] == 0).sum()) == 20
    half = layerwise_magnitude_masks({"a": a, "b": b}, 0.2, masks, rates={"b": 0.5})
    assert int((half["a"] == 0).sum()) == 2 + 2 and int((half["b"] == 0).sum()) == 20 + 8


@pytest.mark.parametrize("strategy", ["global", "layerwise"])
def test_rounds_compound_to_the_expected_sparsity(strategy):
    model = create_model("simplenet_digits", "digits")
    masks = None
    for _ in range(3):
        masks = prune_round_masks(model, 0.2, masks, strategy=strategy)
        with torch.no_grad():
            for name, w in prunable_weights(model).items():
                w.mul_(masks[name])
    assert masks_sparsity(masks)[0] == pytest.approx(100 * (1 - 0.8**3), abs=0.05)


def test_last_layer_rate_prunes_the_output_layer_at_half_rate():
    model = create_model("simplenet_digits", "digits")
    masks = prune_round_masks(model, 0.4, strategy="global", last_layer_rate=0.5)
    assert masks_sparsity({"fc": masks["fc.weight"]})[0] == pytest.approx(20.0, abs=0.05)
    rest = {k: m for k, m in masks.items() if k != "fc.weight"}
    assert masks_sparsity(rest)[0] == pytest.approx(40.0, abs=0.05)


def test_bad_pruning_settings_raise_config_errors():
    model = create_model("simplenet_digits", "digits")
    with pytest.raises(ConfigError, match=r"in \[0, 1\)"):
        global_magnitude_masks(model, 1.0)
    with pytest.raises(ConfigError, match="Unknown lottery pruning strategy 'random'"):
        prune_round_masks(model, 0.2, strategy="random")
    with pytest.raises(ConfigError, match="does not fit a weight"):
        global_magnitude_masks({"a": torch.ones(4)}, 0.5, {"a": torch.ones(3)})


# --- checkpoints -------------------------------------------------------------------------------


def _save(directory, model, *, arch="simplenet_digits", epoch=0, masks=None, name=None):
    scheduler = CompressionScheduler(model)
    if masks:
        scheduler.load_state_dict({"masks_dict": masks})
    save_checkpoint(directory, model=model, arch=arch, dataset="digits", epoch=epoch,
                    scheduler_state=scheduler.state_dict(), extras={"seed": 7}, name=name)
    return directory / (f"{name}_checkpoint.pth.tar" if name else "checkpoint.pth.tar")


def _digits_run(tmp_path):
    """(init, epoch-1, trained) checkpoints of one 'run', the trained one with masks in its scheduler state."""
    torch.manual_seed(0)
    model = create_model("simplenet_digits", "digits")
    init = _save(tmp_path, model, name="untrained")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    early = _save(tmp_path, model, epoch=1, name="epoch1")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    masks = prune_round_masks(model, 0.5)
    trained = _save(tmp_path, model, epoch=5, masks=masks, name="trained")
    return init, early, trained, masks


def test_ticket_from_checkpoints_rewinds_to_init_or_epoch_k(tmp_path):
    init, early, trained, masks = _digits_run(tmp_path)
    made = ticket_from_checkpoints(trained, init)
    assert made.arch == "simplenet_digits" and made.dataset == "digits" and made.epoch == -1
    assert made.masks_source == "scheduler masks"
    path = save_ticket(made.checkpoint, tmp_path / "out" / "ticket.pth.tar")
    ckpt = read_checkpoint(path)
    assert ckpt["epoch"] == -1 and ckpt["extras"]["seed"] == 7
    assert ckpt["extras"]["lottery"]["sparsity"] == pytest.approx(50.0, abs=0.05)
    init_state = read_checkpoint(init)["state_dict"]
    for name, mask in masks.items():
        saved_mask = ckpt["compression_sched"]["masks_dict"][name]
        assert torch.equal(saved_mask, mask)
        assert torch.equal(ckpt["state_dict"][name][mask == 1], init_state[name][mask == 1])
        assert torch.count_nonzero(ckpt["state_dict"][name][mask == 0]) == 0
    late = ticket_from_checkpoints(trained, init, early)
    assert late.epoch == 1
    early_state = read_checkpoint(early)["state_dict"]
    mask = masks["fc.weight"]
    assert torch.equal(late.ticket.state_dict["fc.weight"][mask == 1], early_state["fc.weight"][mask == 1])
    assert torch.equal(late.ticket.state_dict["bn1.running_var"], early_state["bn1.running_var"])


def test_masks_are_read_off_zeros_when_the_checkpoint_has_none(tmp_path):
    init, _, trained, masks = _digits_run(tmp_path)
    ckpt = read_checkpoint(trained)
    bare = tmp_path / "bare.pth"
    torch.save(ckpt["state_dict"], bare)
    with pytest.raises(CheckpointError, match="pass it with --arch"):
        ticket_from_checkpoints(bare, tmp_path / "bare.pth")
    made = ticket_from_checkpoints(bare, init)  # the init checkpoint records the arch
    assert made.masks_source == "zeros of the trained weights"
    for name, mask in masks.items():
        assert torch.equal(made.ticket.masks[name], mask)


def test_checkpoints_of_different_networks_are_refused(tmp_path):
    init, _, trained, _ = _digits_run(tmp_path)
    other = _save(tmp_path, create_model("simplenet_v2_mnist", "mnist"), arch="simplenet_v2_mnist", name="mnist")
    bare = tmp_path / "bare.pth"
    torch.save(read_checkpoint(other)["state_dict"], bare)
    with pytest.raises(CheckpointError, match="do not hold the same network") as err:
        ticket_from_checkpoints(trained, bare)
    assert str(trained) in str(err.value) and str(bare) in str(err.value)
    assert "Shape mismatch: conv1.weight (16, 1, 3, 3) vs (20, 1, 5, 5)" in str(err.value)
    with pytest.raises(CheckpointError, match="different archs") as err:
        ticket_from_checkpoints(trained, other)
    assert str(trained) in str(err.value) and str(other) in str(err.value)
    renamed = _save(tmp_path / "x", create_model("simplenet_digits", "digits"), arch="resnet20_cifar")
    with pytest.raises(CheckpointError, match="different archs") as err:
        ticket_from_checkpoints(trained, renamed)
    assert "'simplenet_digits'" in str(err.value) and "'resnet20_cifar'" in str(err.value)
    with pytest.raises(CheckpointError, match="contradicts the checkpoints"):
        ticket_from_checkpoints(trained, init, arch="resnet20_cifar")
    with pytest.raises(CheckpointError, match="does not exist"):
        ticket_from_checkpoints(trained, tmp_path / "missing.pth.tar")


def test_save_ticket_never_overwrites_an_input_or_writes_a_folder(tmp_path):
    init, _, trained, _ = _digits_run(tmp_path)
    made = ticket_from_checkpoints(trained, init)
    before = trained.read_bytes()
    with pytest.raises(CheckpointError, match="Refusing to overwrite the input"):
        save_ticket(made.checkpoint, trained, inputs=(trained, init))
    assert trained.read_bytes() == before
    with pytest.raises(CheckpointError, match="is a folder"):
        save_ticket(made.checkpoint, tmp_path)
