"""Sensitivity analysis: how much accuracy each layer loses when it alone is pruned.

For every analysed parameter (or coupled channel group) and every sparsity level, the parameter is
pruned one-shot, the model is evaluated, and the parameter is restored; the table
``{parameter: {sparsity: (top1, top5, loss)}}`` tells which layers tolerate pruning (Han et al.
2015; the original Distiller's ``perform_sensitivity_analysis``). The kinds of pruning are the
original's:

* ``element``: the exact fraction of smallest-magnitude weights, as ``SparsityLevelParameterPruner``;
* ``filter`` / ``channel``: the L1-lowest fraction of filters (output channels) or input channels,
  as ``L1RankedStructureParameterPruner``.

With ``coupled=True`` the filter/channel units are the coupled channel groups of the model graph
(:mod:`distiller.graph.coupling`): every filter that adds into a residual stage is pruned together,
ranked jointly as ``group_dependency: Coupled`` ranks them, so the table predicts what a coupled
schedule (and thinning) will do.

The original deep-copied the model for every (parameter, level). Here only the pruned tensors are
saved and restored (bit-exactly), so the cost of a level is one evaluation; :class:`CachedEvaluation`
decodes the evaluation data once, so no level goes through the data pipeline again. Levels can also
be spread over worker processes (:mod:`distiller.analysis.sensitivity_workers`).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.registry import did_you_mean
from distiller.sparsity.criteria import level_mask, structure_level_mask

if TYPE_CHECKING:  # the graph (torch.fx) is imported only when coupled groups are analysed
    from distiller.graph.coupling import ChannelGroup

__all__ = [
    "KINDS",
    "CachedEvaluation",
    "Progress",
    "SensitivityTable",
    "SensitivityUnit",
    "analysable",
    "group_unit_name",
    "perform_sensitivity_analysis",
    "sensitivity_levels",
    "sensitivity_params",
    "sensitivity_units",
    "unit_masks",
]

log = logging.getLogger(__name__)

KINDS = ("element", "filter", "channel")
"""What one-shot pruning removes: single weights, filters (dim 0) or input channels (dim 1)."""

LEVEL_DECIMALS = 10
"""Levels are rounded to this many decimals: ``np.arange`` gives 0.15000000000000002, the table 0.15."""

Result = tuple[float, float, float]
"""``(top1, top5, loss)`` of one evaluation."""

SensitivityTable = OrderedDict  # OrderedDict[str, OrderedDict[float, Result]]
"""``{parameter (or group) name: {sparsity: (top1, top5, loss)}}``, in analysis order."""

Progress = Callable[[Iterable, int, str], Iterable]
"""Wraps an iterable of ``total`` steps with a progress display (``desc`` names it), e.g. tqdm."""


# --- levels and kinds ----------------------------------------------------------------------------


def check_kind(group: str) -> str:
    """``group`` if it is one of :data:`KINDS`."""
    if group not in KINDS:
        raise ConfigError(f"Sensitivity analysis group {group!r} is unknown; use one of {', '.join(KINDS)}.")
    return group


def sensitivity_levels(start: float, stop: float, step: float) -> list[float]:
    """The sparsity levels of ``np.arange(start, stop, step)`` (stop excluded), rounded for display.

    ``(0, 0.10, 0.05)`` gives ``[0.0, 0.05]``. The rounding only removes the binary noise of the
    arange (0.15000000000000002 -> 0.15), so tables and plots show the levels the user typed.

    Raises:
        ConfigError: ``step`` is not positive, the range is empty, or a level is outside [0, 1].
    """
    if not step > 0:
        raise ConfigError(f"--sense-range: STEP must be positive, got {step} (the range is START STOP STEP).")
    levels = [round(float(x), LEVEL_DECIMALS) for x in np.arange(start, stop, step)]
    if not levels:
        raise ConfigError(
            f"--sense-range {start} {stop} {step} gives no levels: STOP is excluded and must exceed START "
            "(e.g. 0 0.95 0.05)."
        )
    return check_levels(levels)


def check_levels(sparsities: Iterable[float]) -> list[float]:
    """The levels as rounded floats, each once, in the given order.

    Raises:
        ConfigError: no level, or a level outside [0, 1].
    """
    levels = list(dict.fromkeys(round(float(s), LEVEL_DECIMALS) for s in sparsities))
    if not levels:
        raise ConfigError("sparsities is empty: give the levels to test, e.g. numpy.arange(0.0, 0.95, 0.05).")
    bad = [s for s in levels if not 0.0 <= s <= 1.0 or math.isnan(s)]
    if bad:
        raise ConfigError(f"Sparsity levels must be fractions in [0, 1]; got {bad} (check --sense-range).")
    return levels


# --- what is analysed ----------------------------------------------------------------------------


def analysable(shape: Sequence[int], kind: str) -> bool:
    """Whether a parameter of ``shape`` is analysed for ``kind``.

    As in the original, element sensitivity covers every 2-D and 4-D weight (Linear and Conv2d),
    while filter and channel sensitivity cover convolution weights (4-D) only: the rows of a final
    Linear layer are the classes, which no one prunes. Channel sensitivity also skips convolutions
    with one input channel per group (an MNIST stem, depthwise convolutions): their only channel
    cannot be removed, so every level would repeat the dense accuracy.
    """
    if kind == "element":
        return len(shape) in (2, 4)
    if kind == "filter":
        return len(shape) == 4
    return len(shape) == 4 and shape[1] > 1


def sensitivity_params(model: nn.Module, group: str) -> list[str]:
    """The parameters the analysis of ``group`` covers by default (see :func:`analysable`)."""
    kind = check_kind(group)
    return [name for name, p in model.named_parameters() if analysable(p.shape, kind)]


@dataclass(frozen=True)
class SensitivityUnit:
    """What one row-set of the table prunes: one parameter, or the weights of a coupled group.

    Attributes:
        name: the table's ``parameter`` column (the parameter name, or :func:`group_unit_name`).
        tensors: the pruned parameters, as ``model.named_parameters()`` spells them.
        group: the coupled channel group, or ``None`` for a single parameter.
    """

    name: str
    tensors: tuple[str, ...]
    group: ChannelGroup | None = None


def group_unit_name(index: int, weights: Sequence[str]) -> str:
    """``group<index>:<weight>;<weight>;...``: semicolons, so that a CSV needs no quoting, and the
    schedule generator can list the weights again."""
    return f"group{index}:{';'.join(weights)}"


def _role(kind: str) -> tuple[str, int]:
    """The member role and dimension that ``kind`` prunes in a coupled group."""
    return ("producer", 0) if kind == "filter" else ("consumer", 1)


def _group_weights(group: ChannelGroup, kind: str, shapes: Mapping[str, torch.Size]) -> list[str]:
    role, dim = _role(kind)
    names = [m.tensor for m in group.members if m.role == role and m.dim == dim and m.tensor in shapes]
    return [n for n in dict.fromkeys(names) if len(shapes[n]) > 1]


def _param_units(model: nn.Module, net_params: Sequence[str] | None, kind: str) -> list[SensitivityUnit]:
    params = dict(model.named_parameters())
    canonical = {normalize_module_name(n): n for n in params}
    if net_params is None:
        return [SensitivityUnit(n, (n,)) for n in sensitivity_params(model, kind)]
    units = []
    for name in net_params:
        actual = name if name in params else canonical.get(normalize_module_name(name))
        if actual is None:
            raise ConfigError(
                f"Sensitivity analysis: {name!r} is not a parameter of the model.{did_you_mean(name, list(params))}"
            )
        if not analysable(params[actual].shape, kind):
            log.info("Sensitivity (%s): skipping %s, shape %s", kind, actual, tuple(params[actual].shape))
            continue
        units.append(SensitivityUnit(actual, (actual,)))
    return units


def _group_units(
    model: nn.Module, net_params: Sequence[str] | None, kind: str, dataset: str | None, example: torch.Tensor | None
) -> list[SensitivityUnit]:
    from distiller.graph import build_graph  # torch.fx tracing: only group analysis needs it
    from distiller.graph.coupling import channel_coupling

    if kind == "element":
        raise ConfigError("Coupled-group sensitivity prunes filters or channels; use group 'filter' or 'channel'.")
    params = dict(model.named_parameters())
    actual = {normalize_module_name(n): n for n in params}
    shapes = {c: params[n].shape for c, n in actual.items()}
    wanted = None
    if net_params is not None:
        wanted = set()
        for name in net_params:
            key = normalize_module_name(name)
            if key not in actual:
                raise ConfigError(
                    f"Sensitivity analysis: {name!r} is not a parameter of the model.{did_you_mean(key, list(actual))}"
                )
            wanted.add(key)
    coupling = channel_coupling(build_graph(model, dataset, example))
    units = []
    for group in coupling.groups:
        weights = _group_weights(group, kind, shapes)
        if not group.prunable or not weights or (wanted is not None and not wanted.intersection(weights)):
            continue
        units.append(SensitivityUnit(group_unit_name(group.index, weights), tuple(actual[w] for w in weights), group))
    if not units:
        raise ConfigError(f"The model has no prunable coupled channel group with {kind} weights to analyse.")
    return units


def sensitivity_units(
    model: nn.Module,
    net_params: Sequence[str] | None,
    group: str,
    *,
    coupled: bool = False,
    dataset: str | None = None,
    example: torch.Tensor | None = None,
) -> list[SensitivityUnit]:
    """The units of the analysis: one per parameter, or one per prunable coupled group (``coupled``).

    Args:
        model: the model.
        net_params: the parameters to analyse (either spelling, with or without ``module.``);
            ``None`` for :func:`sensitivity_params`. Parameters that ``group`` cannot prune are
            skipped, as in the original (which was called with every parameter of the model).
            With ``coupled``, the groups that prune at least one of them.
        group: ``element``, ``filter`` or ``channel``.
        coupled: analyse coupled channel groups (filter: their producers' filters; channel: their
            consumers' input channels).
        dataset: the dataset whose input shape traces the graph (``coupled`` only; default: the
            model's ``input_shape``).
        example: an input batch to trace the graph with instead (``coupled`` only).

    Raises:
        ConfigError: an unknown group or parameter name; ``coupled`` with ``element``.
    """
    kind = check_kind(group)
    if coupled:
        return _group_units(model, net_params, kind, dataset, example)
    return _param_units(model, net_params, kind)


# --- one-shot pruning --------------------------------------------------------------------------


def unit_masks(
    unit: SensitivityUnit, dense: Mapping[str, torch.Tensor], level: float, group: str
) -> dict[str, torch.Tensor]:
    """Masks (``{parameter name: 0/1 tensor}``) that prune ``unit`` to ``level``.

    A single parameter is pruned as the original's pruners did (``level_mask``: exact count of the
    smallest magnitudes; ``structure_level_mask``: L1-ranked, length-normalized, count rounded
    down). A coupled group ranks every channel by the L1 norms of all its slices (producers and
    consumers), exactly as ``group_dependency: Coupled`` does, so that the table predicts what such
    a schedule prunes, and masks the same channels in every pruned member (never all of them).

    Args:
        unit: what to prune.
        dense: the tensors before pruning, by ``named_parameters()`` name: the unit's, and for a
            group every member weight (the ranking reads consumers too).
        level: the fraction to prune.
        group: ``element``, ``filter`` or ``channel``.
    """
    if unit.group is None:
        (name,) = unit.tensors
        t = dense[name]
        if group == "element":
            return {name: level_mask(t, level)}
        return {name: structure_level_mask(t, level, "Filters" if group == "filter" else "Channels", p=1)}
    from distiller.pruning.coupled import coupled_group_masks

    canonical = {normalize_module_name(n): n for n in unit.tensors}
    role, _ = _role(group)
    tensors = {normalize_module_name(n): t for n, t in dense.items()}
    masks = coupled_group_masks([unit.group], tensors, level, criterion="l1", roles=("producer", "consumer"))
    members = {m.tensor for m in unit.group.members if m.role == role}
    out = {}
    for key, name in canonical.items():
        mask = masks.get(key) if key in members else None
        out[name] = mask if mask is not None else torch.ones_like(dense[name])
    return out


def _group_tensors(model: nn.Module, unit: SensitivityUnit) -> dict[str, torch.Tensor]:
    """For a group, the ranking reads every member tensor (consumers too), not only the pruned ones."""
    if unit.group is None:
        return {}
    params = dict(model.named_parameters())
    canonical = {normalize_module_name(n): n for n in params}
    members = {m.tensor for m in unit.group.members if m.tensor.endswith("weight")}
    return {canonical[m]: params[canonical[m]].detach() for m in members if m in canonical}


@torch.no_grad()
def evaluate_pruned(
    model: nn.Module, unit: SensitivityUnit, level: float, group: str, test_func: Callable[[nn.Module], Result]
) -> Result:
    """Prune ``unit`` to ``level`` in place, evaluate with ``test_func``, restore the tensors bit-exactly.

    Saving and restoring only the pruned tensors (instead of deep-copying the model per level, as the
    original did) keeps the cost of a level at one evaluation and the memory at one extra tensor.
    The restore runs even when ``test_func`` raises.
    """
    params = dict(model.named_parameters())
    saved = {name: params[name].detach().clone() for name in unit.tensors}
    dense = {**_group_tensors(model, unit), **saved}
    masks = unit_masks(unit, dense, level, group)
    try:
        for name, mask in masks.items():
            params[name].copy_(saved[name] * mask)
        top1, top5, loss = test_func(model)
    finally:
        for name, tensor in saved.items():
            params[name].copy_(tensor)
    return float(top1), float(top5), float(loss)


# --- evaluation --------------------------------------------------------------------------------


def _correct(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int]) -> list[int]:
    """Per ``k``, how many samples have their target among the ``k`` highest logits (k clipped to the classes)."""
    k_max = min(max(ks), logits.shape[1])
    hits = logits.topk(k_max, dim=1).indices.eq(target.view(-1, 1))
    return [int(hits[:, : min(k, k_max)].any(dim=1).sum()) for k in ks]


class CachedEvaluation:
    """A picklable ``test_func``: top-1, top-5 (percent) and mean loss on batches decoded once.

    The analysis evaluates the model hundreds of times on the same data; decoding it once (into a
    list of tensors) takes the data pipeline out of every evaluation, and lets worker processes
    receive the data with the model instead of rebuilding loaders. Metrics are computed as the
    classifier app's ``evaluate`` computes them (sample-weighted mean loss), so a level-0 row equals
    the dense evaluation of the same data.

    Args:
        batches: ``(inputs, targets)`` pairs.
        criterion: the loss (default: cross-entropy); it must be picklable for worker processes.
        device: where the model runs; the batches are kept there.
    """

    def __init__(
        self,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        criterion: nn.Module | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
        self.batches = [(x.to(self.device), y.to(self.device)) for x, y in batches]
        if not self.batches:
            raise ConfigError("The evaluation data is empty: sensitivity analysis needs at least one batch.")

    @classmethod
    def from_loader(
        cls,
        loader: Iterable,
        criterion: nn.Module | None = None,
        device: torch.device | str = "cpu",
        progress: Progress | None = None,
    ) -> CachedEvaluation:
        """Decode every batch of ``loader`` once (its transforms run here, never again)."""
        batches: Iterable = loader
        if progress is not None:
            batches = progress(loader, len(loader), "decode")  # type: ignore[arg-type]
        return cls(((x, y) for x, y in batches), criterion, device)

    @property
    def num_samples(self) -> int:
        return sum(int(y.numel()) for _, y in self.batches)

    @property
    def nbytes(self) -> int:
        return sum(x.numel() * x.element_size() + y.numel() * y.element_size() for x, y in self.batches)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> Result:
        model.eval()
        correct = [0, 0]
        loss_total, count = 0.0, 0
        for inputs, target in self.batches:
            output = model(inputs)
            n = target.numel()
            loss_total += float(self.criterion(output, target).item()) * n
            for i, c in enumerate(_correct(output, target, (1, 5))):
                correct[i] += c
            count += n
        return 100.0 * correct[0] / count, 100.0 * correct[1] / count, loss_total / count

    def __getstate__(self) -> dict:
        # Pickled for worker processes: tensors travel from host memory whatever the device.
        state = dict(self.__dict__)
        state["batches"] = [(x.cpu(), y.cpu()) for x, y in self.batches]
        state["criterion"] = self.criterion.cpu() if isinstance(self.criterion, nn.Module) else self.criterion
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.batches = [(x.to(self.device), y.to(self.device)) for x, y in self.batches]
        if isinstance(self.criterion, nn.Module):
            self.criterion = self.criterion.to(self.device)


# --- the analysis ------------------------------------------------------------------------------

DENSE = (-1, -1)
"""The task that evaluates the unpruned model (every level-0 row)."""


def analysis_tasks(num_units: int, levels: Sequence[float]) -> list[tuple[int, int]]:
    """``(unit, level)`` index pairs to evaluate: level 0 of every unit is the dense model, evaluated once."""
    tasks = [DENSE] if 0.0 in levels else []
    tasks += [(u, i) for u in range(num_units) for i, level in enumerate(levels) if level != 0.0]
    return tasks


def run_task(
    model: nn.Module,
    units: Sequence[SensitivityUnit],
    levels: Sequence[float],
    group: str,
    test_func: Callable[[nn.Module], Result],
    task: tuple[int, int],
) -> Result:
    """Evaluate one task of :func:`analysis_tasks` (in this process or in a worker)."""
    if task == DENSE:
        top1, top5, loss = test_func(model)
        return float(top1), float(top5), float(loss)
    unit, level = task
    return evaluate_pruned(model, units[unit], levels[level], group, test_func)


def assemble(
    units: Sequence[SensitivityUnit], levels: Sequence[float], results: Mapping[tuple[int, int], Result]
) -> SensitivityTable:
    """The table in analysis order from task results (level 0 from the dense task)."""
    table: SensitivityTable = OrderedDict()
    for u, unit in enumerate(units):
        table[unit.name] = OrderedDict(
            (level, results[DENSE] if level == 0.0 else results[(u, i)]) for i, level in enumerate(levels)
        )
    return table


def perform_sensitivity_analysis(
    model: nn.Module,
    net_params: Sequence[str] | None,
    sparsities: Iterable[float],
    test_func: Callable[[nn.Module], Result],
    group: str,
    *,
    coupled: bool = False,
    dataset: str | None = None,
    example: torch.Tensor | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    distributed: bool = False,
) -> SensitivityTable:
    """Prune each parameter (or coupled group) alone at each level, one-shot, and evaluate.

    The original's function, with the same positional arguments and result. The model is pruned in
    place and restored bit-exactly after every level (do not use it from another thread meanwhile).

    Args:
        model: the trained model.
        net_params: the parameters to analyse; ``None`` for the default (:func:`sensitivity_params`).
        sparsities: the levels (fractions in [0, 1]), e.g. ``sensitivity_levels(0, 0.95, 0.05)``.
        test_func: ``test_func(model) -> (top1, top5, loss)``; deterministic, so that level 0 (the
            unpruned model, evaluated once for all rows) and parallel runs are exact. With
            ``workers > 1`` it must be picklable (:class:`CachedEvaluation` is).
        group: ``element``, ``filter`` or ``channel``.
        coupled: analyse coupled channel groups as units (``filter``/``channel``; see
            :func:`sensitivity_units`). Their rows are named ``group<id>:<weight>;<weight>...``.
        dataset: the dataset whose input shape traces the graph (``coupled`` only).
        example: an input batch that traces the graph instead (``coupled`` only).
        workers: evaluation processes; 1 evaluates here (see
            :func:`distiller.analysis.sensitivity_workers.parallel_results`).
        progress: wraps the task iterator with a progress display (the CLI passes tqdm on a TTY).
        distributed: in a distributed (DDP) job, every rank calls this and evaluates every N-th
            (parameter, level) pair (with its own ``workers``); all ranks return the whole table
            (:func:`distiller.distributed.shared_results`). Without a job it changes nothing.

    Returns:
        ``OrderedDict{name: OrderedDict{sparsity: (top1, top5, loss)}}``.

    Raises:
        ConfigError: an unknown group or parameter, a level outside [0, 1], ``workers < 1``, or a
            model/``test_func`` that cannot be pickled for ``workers > 1``.
    """
    kind = check_kind(group)
    levels = check_levels(sparsities)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer (1 = evaluate in this process), got {workers!r}.")
    units = sensitivity_units(model, net_params, kind, coupled=coupled, dataset=dataset, example=example)
    tasks = analysis_tasks(len(units), levels)
    log.info(
        "Sensitivity analysis (%s%s): %d %s x %d levels, %d evaluations, %d process(es)",
        kind,
        ", coupled groups" if coupled else "",
        len(units),
        "groups" if coupled else "parameters",
        len(levels),
        len(tasks),
        workers,
    )

    def evaluate(share: list[tuple[int, int]]) -> dict[tuple[int, int], Result]:
        if workers > 1 and len(share) > 1:
            from distiller.analysis.sensitivity_workers import parallel_results

            return parallel_results(model, units, levels, kind, test_func, share, workers, progress)
        steps: Iterable = share if progress is None else progress(share, len(share), f"sensitivity ({kind})")
        return {task: run_task(model, units, levels, kind, test_func, task) for task in steps}

    if distributed:
        from distiller.distributed.work import shared_results

        results = shared_results(evaluate, tasks)
    else:
        results = evaluate(tasks)
    return assemble(units, levels, results)
