"""The iterative-magnitude-pruning loop on the embedded digits data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.apps.optimizers import build_optimizer
from distiller.data import load_data
from distiller.determinism import seed_everything
from distiller.errors import ConfigError
from distiller.lottery import IMPConfig, Snapshot, TrainingSetup, masks_sparsity, prunable_weights, run_imp
from distiller.models import create_model


def _setup(seed: int = 3, train_size: float = 0.5) -> TrainingSetup:
    seed_everything(seed)
    model = create_model("simplenet_digits", "digits")
    loaders = load_data("digits", batch_size=64, deterministic=True, seed=seed, effective_train_size=train_size)
    return TrainingSetup(
        model=model,
        loaders=loaders,
        criterion=nn.CrossEntropyLoss(),
        make_optimizer=lambda m: build_optimizer("sgd", m.parameters(), 0.1, 0.9, 1e-4),
        seed=seed,
        deterministic=True,
        progress=False,
    )


def _collect(snapshots: list) -> callable:
    def keep(s: Snapshot) -> None:
        masks = {n: m.mask.clone() for n, m in s.scheduler.masks.items() if m.mask is not None}
        state = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
        snapshots.append((s.kind, s.round, s.epoch, state, masks, s.sparsity))

    return keep


def test_two_rounds_reach_the_compound_sparsity_and_keep_masks_fixed():
    setup, snapshots, records = _setup(), [], []
    config = IMPConfig(rounds=2, prune_fraction=0.4, epochs_per_round=2)
    result = run_imp(setup, config, on_snapshot=_collect(snapshots), on_round=records.append)
    assert [r.round for r in result.rounds] == [0, 1, 2] and records == result.rounds
    assert result.rounds[0].sparsity == 0.0
    for r in (1, 2):
        assert result.rounds[r].sparsity == pytest.approx(config.expected_sparsity(r), abs=0.05)
    assert masks_sparsity(result.masks)[0] == pytest.approx(100 * (1 - 0.6**2), abs=0.05)
    assert all(len(r.epochs) == 2 for r in result.rounds)
    assert [(kind, rnd, epoch) for kind, rnd, epoch, *_ in snapshots] == [
        ("init", 0, -1), ("trained", 0, 1), ("ticket", 1, -1), ("trained", 1, 1), ("ticket", 2, -1), ("trained", 2, 1)
    ]
    init_state = snapshots[0][3]
    for kind, _, _, state, masks, _ in snapshots:
        if kind == "ticket":  # the initialization under the masks
            for name, mask in masks.items():
                assert torch.equal(state[name][mask == 1], init_state[name][mask == 1]), name
                assert torch.count_nonzero(state[name][mask == 0]) == 0
            assert torch.equal(state["bn2.running_mean"], init_state["bn2.running_mean"])
        if kind == "trained" and masks:  # retraining kept pruned weights at exactly zero ...
            for name, mask in masks.items():
                assert torch.count_nonzero(state[name][mask == 0]) == 0, name
    round1_mask = snapshots[2][4]["fc.weight"]
    round2_mask = snapshots[4][4]["fc.weight"]
    assert not (round2_mask.bool() & ~round1_mask.bool()).any()  # ... and nothing pruned ever comes back
    weights = prunable_weights(setup.model)
    assert all(torch.count_nonzero(weights[n][m == 0]) == 0 for n, m in result.masks.items())
    assert result.final.test.top1 > 80.0


def test_late_rewinding_uses_the_weights_after_k_epochs():
    setup, snapshots = _setup(), []
    config = IMPConfig(rounds=1, prune_fraction=0.5, epochs_per_round=3, rewind_epoch=1)
    result = run_imp(setup, config, on_snapshot=_collect(snapshots))
    kinds = [(kind, rnd, epoch) for kind, rnd, epoch, *_ in snapshots]
    assert kinds == [("init", 0, -1), ("rewind", 0, 0), ("trained", 0, 2), ("ticket", 1, 0), ("trained", 1, 2)]
    rewind_state, (ticket_state, masks) = snapshots[1][3], snapshots[3][3:5]
    init_state = snapshots[0][3]
    for name, mask in masks.items():
        kept = mask == 1
        assert torch.equal(ticket_state[name][kept], rewind_state[name][kept]), name
        assert not torch.equal(ticket_state[name][kept], init_state[name][kept]), name
    assert [e.epoch for e in result.rounds[1].epochs] == [1, 2]  # the rest of the dense run's schedule


def test_runs_are_reproducible():
    first = run_imp(_setup(train_size=0.2), IMPConfig(rounds=1, prune_fraction=0.3, epochs_per_round=1))
    second = run_imp(_setup(train_size=0.2), IMPConfig(rounds=1, prune_fraction=0.3, epochs_per_round=1))
    assert [r.test.top1 for r in first.rounds] == [r.test.top1 for r in second.rounds]
    assert all(torch.equal(first.masks[n], second.masks[n]) for n in first.masks)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rounds": 0}, "--rounds must be at least 1"),
        ({"rounds": 2, "prune_fraction": 1.0}, "--prune-fraction"),
        ({"rounds": 2, "epochs_per_round": 0}, "--epochs-per-round must be at least 1"),
        ({"rounds": 2, "epochs_per_round": 3, "rewind_epoch": 3}, r"--rewind-epoch must be in .* = \[0, 3\)"),
        ({"rounds": 2, "strategy": "random"}, "--strategy must be one of global, layerwise"),
        ({"rounds": 2, "prune_fraction": 0.6, "last_layer_rate": 2.0}, "--last-layer-rate"),
    ],
)
def test_bad_configurations_name_the_flag(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        IMPConfig(**kwargs)
