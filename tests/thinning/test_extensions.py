"""The thinning extensions in schedules: FilterRemover mid-schedule, then training continues."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.config import dict_config
from distiller.errors import ConfigError
from distiller.models import create_model
from distiller.scheduler import EXTENSIONS
from distiller.thinning.extensions import StructureRemover

SCHEDULE = {
    "version": 1,
    "pruners": {
        "filters": {
            "class": "L1RankedStructureParameterPruner",
            "group_type": "Filters",
            "desired_sparsity": 0.5,
            "group_dependency": "Coupled",
            "weights": ["conv1.weight", "conv2.weight"],
        },
    },
    "extensions": {
        "thinner": {
            "class": "FilterRemover",
            "thinning_func_str": "remove_filters",
            "arch": "simplenet_digits",
            "dataset": "digits",
        }
    },
    "policies": [
        {"pruner": {"instance_name": "filters"}, "epochs": [0]},
        {"extension": {"instance_name": "thinner"}, "epochs": [1]},
    ],
}


def _train_epoch(model, scheduler, optimizer, epoch, x, y, steps=3):
    scheduler.on_epoch_begin(epoch, optimizer)
    for step in range(steps):
        scheduler.on_minibatch_begin(epoch, step, steps, optimizer)
        loss = nn.functional.cross_entropy(model(x), y)
        loss = scheduler.before_backward_pass(epoch, step, steps, loss, optimizer)
        optimizer.zero_grad()
        loss.backward()
        scheduler.before_parameter_optimization(epoch, step, steps, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, step, steps, optimizer)
    scheduler.on_epoch_end(epoch, optimizer)


def test_filter_remover_thins_mid_schedule_and_training_continues():
    torch.manual_seed(0)
    model = create_model("simplenet_digits", "digits")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = dict_config(model, optimizer, SCHEDULE)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    _train_epoch(model, scheduler, optimizer, 0, x, y)
    assert model.conv1.weight.shape[0] == 16  # masked, not yet removed
    _train_epoch(model, scheduler, optimizer, 1, x, y)
    assert (model.conv1.out_channels, model.conv2.in_channels, model.conv2.out_channels) == (8, 8, 16)
    assert model.bn1.num_features == 8 and model.fc.in_features == 16 * 16
    assert scheduler.masks["conv2.weight"].mask.shape == model.conv2.weight.shape
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert optimizer.state[p]["momentum_buffer"].shape == p.shape
    before = model.conv2.weight.detach().clone()
    _train_epoch(model, scheduler, optimizer, 2, x, y)  # the same optimizer trains the smaller model
    assert not torch.equal(before, model.conv2.weight)
    assert len(model.thinning_plans) == 1


def test_extensions_are_registered_under_the_original_names():
    assert {"StructureRemover", "FilterRemover", "ChannelRemover"} <= set(EXTENSIONS.names())
    with pytest.raises(ConfigError, match="thinning_func_str"):
        StructureRemover("remove_rows", "resnet20_cifar", "cifar10")
