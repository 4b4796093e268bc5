"""Scenarios that run inside every rank of a 2-process gloo job (see test_consistency.py).

Each scenario takes the rank and returns plain data (tensors, numbers, strings) that the test
compares across ranks. The module must be importable by spawned processes, hence its own file.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import torch
from torch import nn

from distiller.distributed import (
    init_distributed,
    launch_env,
    rank,
    rank_local,
    shared_map,
    shutdown,
)
from distiller.errors import DistributedError


def _meta(model: nn.Module) -> dict:
    return {"current_epoch": 0, "starting_epoch": 0, "ending_epoch": 1, "frequency": 1, "model": model}


def _conv_masks(pruner) -> dict[str, torch.Tensor]:  # noqa: ANN001
    from distiller.sparsity import MaskSet

    model = nn.Sequential(nn.Conv2d(4, 32, 3), nn.Conv2d(32, 8, 3))
    generator = torch.Generator().manual_seed(7)  # equal weights on every rank (as DDP keeps them),
    with torch.no_grad():  # without touching the ranks' own random streams
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    masks = MaskSet.for_model(model)
    for name, param in model.named_parameters():
        pruner.set_param_mask(param, name, masks, _meta(model))
    return {name: m.mask.clone() for name, m in masks.items() if m.mask is not None}


def random_pruners(r: int) -> dict:
    """Random ranking, Bernoulli, random level and ε-greedy noise, each rank's RNG seeded differently."""
    from distiller.pruning import BernoulliFilterPruner, RandomLevelStructureParameterPruner, RandomRankedFilterPruner
    from distiller.sparsity import structure_level_binary_map

    out = {}
    torch.manual_seed(1000 + r)  # the ranks' own random streams differ (dropout, augmentation drift)
    out["random_ranked"] = _conv_masks(RandomRankedFilterPruner("rr", "Filters", 0.5, ["0.weight", "1.weight"]))
    torch.manual_seed(2000 + r)
    out["bernoulli"] = _conv_masks(BernoulliFilterPruner("b", "Filters", 0.5, ["0.weight"]))
    torch.manual_seed(3000 + r)
    out["random_level"] = _conv_masks(RandomLevelStructureParameterPruner("rl", "Filters", [0.1, 0.9], ["0.weight"]))
    torch.manual_seed(4000 + r)
    weights = torch.arange(64.0).reshape(16, 4)
    out["noise"] = structure_level_binary_map(weights, 0.5, "Rows", noise=1.0)
    torch.manual_seed(5000 + r)
    with rank_local():  # control: without rank 0's draws the ranks disagree
        out["local_control"] = _conv_masks(RandomRankedFilterPruner("rr", "Filters", 0.5, ["0.weight"]))
    return out


def _rank_dependent_policy():  # noqa: ANN202
    """A policy whose masks differ per rank (as a criterion reading rank-local data would)."""
    from distiller.scheduler.policies import ScheduledTrainingPolicy

    class RankDependentPolicy(ScheduledTrainingPolicy):
        def on_epoch_begin(self, model, zeros_mask_dict, meta, **kwargs):  # noqa: ANN001, ANN003
            weight = model[0].weight
            mask = torch.ones_like(weight)
            mask[rank() :: 4] = 0  # rank 0 prunes filters 0, 4, ...; rank 1 prunes 1, 5, ...
            with torch.no_grad():
                weight.mul_(mask)
                weight.add_(rank())  # and its weights drifted too
            zeros_mask_dict["0.weight"].mask = mask

    return RankDependentPolicy()


def mask_repair(r: int) -> dict:
    """SynchronizedScheduler makes rank 0's masks (and their parameters) every rank's."""
    from distiller.distributed.scheduler import SynchronizedScheduler
    from distiller.scheduler import CompressionScheduler

    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(2, 8, 3))
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(_rank_dependent_policy(), starting_epoch=0, ending_epoch=1, frequency=1)
    synced = SynchronizedScheduler(scheduler)
    synced.on_epoch_begin(0)
    return {
        "mask": scheduler.masks["0.weight"].mask.clone(),
        "weight": model[0].weight.detach().clone(),
        "broadcasts": synced.mask_broadcasts,
    }


def _shard_data(r: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(50 + r)
    return torch.randn(6 + 4 * r, 3, 5, 5, generator=generator)  # unequal shares


def activation_stats(r: int) -> dict:
    """All-reduced APoZ statistics equal those of one process over both ranks' data."""
    from distiller.analysis.activations import SummaryActivationStatsCollector

    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    collector = SummaryActivationStatsCollector(model, "apoz_channels", publish=False)
    with collector, torch.no_grad():
        model(_shard_data(r))
    collector.all_reduce()
    reference = SummaryActivationStatsCollector(model, "apoz_channels", publish=False)
    with reference, torch.no_grad():
        model(_shard_data(0))
        model(_shard_data(1))
    return {"reduced": collector.value(), "single": reference.value()}


def calibration(r: int) -> dict:
    """Calibration statistics merged across ranks equal one process's statistics over all batches."""
    from distiller.quantization.calibration import collect_quant_stats

    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 2))
    batches = [_shard_data(0), _shard_data(1)]

    def mine(m: nn.Module) -> None:
        m(batches[r])

    def both(m: nn.Module) -> None:
        for b in batches:
            m(b)

    merged = collect_quant_stats(model, mine, across_ranks=True)
    single = collect_quant_stats(model, both)
    return {"merged": merged, "single": single}


def sharing(r: int) -> dict:
    """shared_map: every rank gets all results in order; a failure anywhere raises on every rank."""
    results = shared_map(lambda x: (x * x, rank()), list(range(7)))

    def fails_on_rank_1(x: int) -> int:
        if rank() == 1 and x == 3:
            raise ValueError("item 3 is broken")
        return x

    try:
        shared_map(fails_on_rank_1, list(range(5)))
        error = None
    except DistributedError as err:
        error = str(err)
    return {"results": results, "error": error}


def rewrap(r: int) -> dict:
    """RewrappingDDP rebuilds after a parameter shrinks; training continues and weights stay equal."""
    from distiller.distributed.consistency import fingerprints
    from distiller.distributed.wrapper import RewrappingDDP

    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ddp = RewrappingDDP(model)
    generator = torch.Generator().manual_seed(r)

    def step() -> None:
        optimizer.zero_grad()
        ddp(torch.randn(5, 4, generator=generator)).sum().backward()
        optimizer.step()

    step()
    with torch.no_grad():  # thinning: keep 6 of 8 hidden units
        model[0].weight.data = model[0].weight.data[:6].clone()
        model[0].bias.data = model[0].bias.data[:6].clone()
        model[2].weight.data = model[2].weight.data[:, :6].clone()
    step()
    step()
    return {"rewraps": ddp.rewraps, "params": fingerprints(model)["params"], "shape": tuple(model[0].weight.shape)}


def sensitivity(r: int) -> dict:
    """Sensitivity analysis shared among ranks gives the table of a single process."""
    from distiller.analysis.sensitivity import perform_sensitivity_analysis

    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3))
    data = _shard_data(0)
    target = torch.arange(len(data)) % 3

    def test_func(m: nn.Module) -> tuple[float, float, float]:
        with torch.no_grad():
            out = m(data)
        top1 = (out.argmax(1) == target).float().mean().item() * 100
        return top1, 100.0, nn.functional.cross_entropy(out, target).item()

    levels = [0.0, 0.3, 0.6]
    shared = perform_sensitivity_analysis(model, None, levels, test_func, "element", distributed=True)
    single = perform_sensitivity_analysis(model, None, levels, test_func, "element")
    return {"shared": shared, "single": single}


SCENARIOS = {
    f.__name__: f for f in (random_pruners, mask_repair, activation_stats, calibration, sharing, rewrap, sensitivity)
}


def worker(local_rank: int, world: int, port: int, out_dir: str) -> None:
    """The body of one rank: join the job, run every scenario, save the results."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    init_distributed(launch_env(), "cpu", timeout_s=60)
    results = {}
    try:
        for name, scenario in SCENARIOS.items():
            try:
                results[name] = ("ok", scenario(local_rank))
            except Exception:  # reported by the test that reads this scenario
                results[name] = ("error", traceback.format_exc())
    finally:
        torch.save(results, Path(out_dir) / f"rank{local_rank}.pt")
        shutdown()
