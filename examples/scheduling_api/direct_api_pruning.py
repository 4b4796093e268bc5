"""Build a compression schedule in Python, without YAML (the original's ``direct_api_pruning.py``).

Run it::

    python examples/scheduling_api/direct_api_pruning.py [--epochs 3]

It builds, object by object, the schedule of the original's full-flow test 6 for ``simplenet_mnist``
(without thinning): one-shot L1 filter pruning of ``conv1`` at epochs 0 and 1, structured AGP of
``conv2`` filters (5% -> 20%) and element-wise AGP of ``fc2`` (2% -> 15%) over epochs 0-1, and a
StepLR decay every epoch. It trains on random stand-in data (the point is the API, not accuracy),
then logs each layer's sparsity, and checks that the same schedule written as a dict gives the
same plan.

The same schedule in YAML::

    pruners:
      filter_pruner: {class: L1RankedStructureParameterPruner, group_type: Filters,
                      desired_sparsity: 0.1, weights: [conv1.weight]}
      conv2_agp: {class: L1RankedStructureParameterPruner_AGP, group_type: Filters,
                  initial_sparsity: 0.05, final_sparsity: 0.20, weights: [conv2.weight]}
      fc2_agp: {class: AutomatedGradualPruner, initial_sparsity: 0.02, final_sparsity: 0.15,
                weights: [fc2.weight]}
    lr_schedulers:
      lr: {class: StepLR, step_size: 1, gamma: 0.5}
    policies:
      - {pruner: {instance_name: filter_pruner}, epochs: [0, 1]}
      - {pruner: {instance_name: conv2_agp}, starting_epoch: 0, ending_epoch: 2, frequency: 1}
      - {pruner: {instance_name: fc2_agp}, starting_epoch: 0, ending_epoch: 2, frequency: 1}
      - {lr_scheduler: {instance_name: lr}, starting_epoch: 0, ending_epoch: 3, frequency: 1}

Measured (CPU, ``--epochs 3``): conv1 10% of filters, conv2 20% of filters, fc2 15.0% of weights.
"""

from __future__ import annotations

import argparse
import logging

import torch
from torch import nn

from distiller.config import validate_schedule
from distiller.models import create_model
from distiller.pruning import PRUNERS
from distiller.scheduler import CompressionScheduler, LRPolicy, PruningPolicy

log = logging.getLogger("direct_api_pruning")


def build_schedule(model: nn.Module, optimizer: torch.optim.Optimizer) -> CompressionScheduler:
    """The schedule of the module docstring, built from objects."""
    scheduler = CompressionScheduler(model)
    filter_pruner = PRUNERS.get("L1RankedStructureParameterPruner")(
        "filter_pruner", group_type="Filters", desired_sparsity=0.1, weights=["conv1.weight"]
    )
    conv2_agp = PRUNERS.get("L1RankedStructureParameterPruner_AGP")(
        "conv2_agp", initial_sparsity=0.05, final_sparsity=0.20, group_type="Filters", weights=["conv2.weight"]
    )
    fc2_agp = PRUNERS.get("AutomatedGradualPruner")(
        "fc2_agp", initial_sparsity=0.02, final_sparsity=0.15, weights=["fc2.weight"]
    )
    scheduler.add_policy(PruningPolicy(filter_pruner, None), epochs=[0, 1], name="filter_pruner")
    scheduler.add_policy(
        PruningPolicy(conv2_agp, None), starting_epoch=0, ending_epoch=2, frequency=1, name="conv2_agp"
    )
    scheduler.add_policy(PruningPolicy(fc2_agp, None), starting_epoch=0, ending_epoch=2, frequency=1, name="fc2_agp")
    lr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    scheduler.add_policy(LRPolicy(lr), starting_epoch=0, ending_epoch=3, frequency=1, name="lr")
    return scheduler


SCHEDULE_DICT = {
    "pruners": {
        "filter_pruner": {"class": "L1RankedStructureParameterPruner", "group_type": "Filters",
                          "desired_sparsity": 0.1, "weights": ["conv1.weight"]},
        "conv2_agp": {"class": "L1RankedStructureParameterPruner_AGP", "group_type": "Filters",
                      "initial_sparsity": 0.05, "final_sparsity": 0.20, "weights": ["conv2.weight"]},
        "fc2_agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.02, "final_sparsity": 0.15,
                    "weights": ["fc2.weight"]},
    },
    "lr_schedulers": {"lr": {"class": "StepLR", "step_size": 1, "gamma": 0.5}},
    "policies": [
        {"pruner": {"instance_name": "filter_pruner"}, "epochs": [0, 1]},
        {"pruner": {"instance_name": "conv2_agp"}, "starting_epoch": 0, "ending_epoch": 2, "frequency": 1},
        {"pruner": {"instance_name": "fc2_agp"}, "starting_epoch": 0, "ending_epoch": 2, "frequency": 1},
        {"lr_scheduler": {"instance_name": "lr"}, "starting_epoch": 0, "ending_epoch": 3, "frequency": 1},
    ],
}  # fmt: skip


def train(model: nn.Module, scheduler: CompressionScheduler, optimizer, epochs: int, batches: int) -> None:
    """A plain PyTorch loop with the six scheduler hooks."""
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(batches)]
    criterion = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        scheduler.on_epoch_begin(epoch, optimizer)
        for step, (x, y) in enumerate(data):
            scheduler.on_minibatch_begin(epoch, step, len(data), optimizer)
            loss = criterion(model(x), y)
            loss = scheduler.before_backward_pass(epoch, step, len(data), loss, optimizer)
            optimizer.zero_grad()
            loss.backward()
            scheduler.before_parameter_optimization(epoch, step, len(data), optimizer)
            optimizer.step()
            scheduler.on_minibatch_end(epoch, step, len(data), optimizer)
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": loss.item(), "max": 0.0})
        log.info("epoch %d: loss %.3f, lr %.4f", epoch, loss.item(), optimizer.param_groups[0]["lr"])


def sparsities(model: nn.Module) -> dict[str, float]:
    """Fraction of zero filters of conv1/conv2 and of zero weights of fc2."""

    def zero_filters(w: torch.Tensor) -> float:
        return float((w.flatten(1).abs().sum(1) == 0).float().mean())

    return {
        "conv1 filters": zero_filters(model.conv1.weight),
        "conv2 filters": zero_filters(model.conv2.weight),
        "fc2 weights": 1 - torch.count_nonzero(model.fc2.weight).item() / model.fc2.weight.numel(),
    }


def main(epochs: int = 3, batches: int = 4) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model("simplenet_mnist")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = build_schedule(model, optimizer)
    plan = validate_schedule(SCHEDULE_DICT, create_model("simplenet_mnist"))
    log.info("The same schedule as a dict:\n%s", plan.describe())
    train(model, scheduler, optimizer, epochs, batches)
    result = sparsities(model)
    for name, value in result.items():
        log.info("%s: %.1f%% sparse", name, 100 * value)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(args.epochs, args.batches)
