"""Greedy filter pruning: shrink a network one layer step at a time, keeping the step that hurts least.

The search is the original Distiller's NetAdapt-like greedy pruner (Abbasi-Asl & Yu 2017,
arXiv:1705.07356; Yang et al., NetAdapt, ECCV 2018). Each *iteration* tries every candidate layer:
on a copy of the current network it removes ``pruning_step`` of that layer's filters (the lowest
L1 norms), fine-tunes the copy briefly and evaluates it; the copy that scores best by
``(top1, top5, -loss)`` becomes the current network. Iterations repeat until the convolutions'
MACs are at most ``target_density`` of the starting network's.

What differs from the original, and why:

* **Candidates come from the model graph.** The original hard-coded lists of layers for four
  architectures. Here a candidate is a prunable coupled channel group
  (:func:`~distiller.graph.coupling.channel_coupling`) whose producers include a convolution, so any
  model that traces works, and a residual stage (whose filters must go together) is one candidate
  pruned consistently. Its name (the CSV's ``param_name``) is the group's first producer weight.
* **Filters are removed before fine-tuning**, not masked during it: the fine-tuned and evaluated
  network is exactly the smaller network that is kept (the original fine-tuned the masked copy and
  thinned it afterwards).
* **Counts round half up.** A step removes ``round(pruning_step * filters)`` filters (never all of
  them), so small layers stay candidates at small steps; a layer whose step rounds to zero is done.

The search itself is the pure orchestration in :func:`greedy_filter_pruning`; training, evaluation
and saving are callbacks, so the same search runs from the classifier app (``--greedy``) or from a
user's own loop.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.graph.coupling import ChannelGroup, channel_coupling
from distiller.graph.model_graph import ModelGraph, build_graph
from distiller.naming import normalize_module_name
from distiller.pruning.coupled import coupled_group_masks

__all__ = [
    "CSV_COLUMNS",
    "FINETUNING_POLICIES",
    "CandidateResult",
    "GreedyCandidate",
    "GreedyRecord",
    "GreedyResult",
    "check_greedy_arguments",
    "conv_macs",
    "conv_weight_sizes",
    "finetuning_epochs",
    "filters_to_remove",
    "greedy_candidates",
    "greedy_filter_pruning",
    "prune_group",
    "selection_key",
    "weight_densities",
]

log = logging.getLogger(__name__)

FINETUNING_POLICIES = ("constant", "linear-grow")
CSV_COLUMNS = ("iteration", "top1", "param_name", "normalized_macs", "total_macs", "densities")
"""The original's ``greedy.csv`` header, in its order (``densities`` is one cell holding a list)."""

Scores = tuple[float, float, float]
"""``(top1, top5, loss)`` of one evaluation."""


# --- pure parts ----------------------------------------------------------------------------------


def check_greedy_arguments(target_density: float, pruning_step: float) -> None:
    """Reject values the search cannot honour, naming the CLI flag, before any work is done.

    Raises:
        ConfigError: ``target_density`` or ``pruning_step`` is not strictly between 0 and 1.
    """
    if not isinstance(target_density, int | float) or not 0.0 < target_density < 1.0:
        raise ConfigError(
            f"--greedy-target-density is the fraction of the convolutions' MACs to keep, strictly between 0 and 1 "
            f"(e.g. 0.5); got {target_density!r}."
        )
    if not isinstance(pruning_step, int | float) or not 0.0 < pruning_step < 1.0:
        raise ConfigError(
            f"--greedy-pruning-step is the fraction of a layer's filters removed per step, strictly between 0 and 1 "
            f"(default 0.10); got {pruning_step!r}."
        )


def filters_to_remove(num_channels: int, step: float) -> int:
    """How many of ``num_channels`` filters one step removes: ``step`` of them rounded half up,
    and never all of them (a layer keeps at least one filter)."""
    return max(0, min(math.floor(step * num_channels + 0.5), num_channels - 1))


def finetuning_epochs(policy: str, ft_epochs: float, normalized_macs: float) -> float:
    """Epochs of fine-tuning for each candidate of an iteration that starts at ``normalized_macs``.

    ``constant`` fine-tunes every candidate for ``ft_epochs`` epochs. ``linear-grow`` (the
    original's) fine-tunes for ``ft_epochs * (1 - normalized_macs)``: nothing at the first iteration
    (the dense network has lost nothing to recover from) and more as the network shrinks, reaching
    ``ft_epochs * (1 - target_density)`` near the end. Fractions of an epoch are a prefix of its
    mini-batches (see the caller's fine-tuning function).

    Raises:
        ConfigError: unknown policy or negative ``ft_epochs``.
    """
    if ft_epochs < 0:
        raise ConfigError(f"--greedy-ft-epochs must be 0 or more, got {ft_epochs!r}.")
    if policy == "constant":
        return float(ft_epochs)
    if policy == "linear-grow":
        return float(ft_epochs) * max(0.0, 1.0 - normalized_macs)
    raise ConfigError(
        f"Unknown --greedy-finetuning-policy {policy!r}; choose one of {', '.join(FINETUNING_POLICIES)}."
    )


def selection_key(scores: Scores) -> tuple[float, float, float]:
    """The original's ranking of candidates: higher top-1, then higher top-5, then lower loss.

    Candidates are compared with a strict ``>``, so on a tie the earliest in graph order is kept.
    """
    top1, top5, loss = scores
    return (top1, top5, -loss)


def _conv_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {
        normalize_module_name(name): m for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)
    }


def conv_macs(graph: ModelGraph) -> int:
    """MACs of the convolutions of ``graph`` per sample: the budget the original greedy search
    reduces (fully-connected layers are not counted, as there)."""
    convs = _conv_modules(graph.model)
    return sum(n.macs for n in graph.nodes.values() if n.kind == "module" and n.module_name in convs)


def conv_weight_sizes(model: nn.Module) -> dict[str, int]:
    """``{weight name: numel}`` of every convolution, in ``named_modules`` order: the layers whose
    densities the CSV reports."""
    return {f"{name}.weight": m.weight.numel() for name, m in _conv_modules(model).items() if m.weight is not None}


def weight_densities(dense_sizes: Mapping[str, int], model: nn.Module) -> list[float]:
    """Per weight of ``dense_sizes`` (in its order): its size in ``model`` over its dense size.

    Thinning shrinks a weight both by its removed filters and by the removed input channels of the
    layer before it, so a layer that was never a chosen candidate can still lose density.
    """
    now = conv_weight_sizes(model)
    return [now.get(name, 0) / size if size else 0.0 for name, size in dense_sizes.items()]


# --- candidates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GreedyCandidate:
    """One layer (coupled group) that an iteration tries to prune."""

    name: str  # the group's first producer weight, e.g. "layer1.0.conv1.weight"
    group: ChannelGroup = field(repr=False)
    num_channels: int
    num_to_remove: int


def greedy_candidates(model: nn.Module, graph: ModelGraph, pruning_step: float) -> list[GreedyCandidate]:
    """The prunable coupled groups of ``graph`` that a convolution produces and that one step of
    ``pruning_step`` still shrinks, in graph order."""
    convs = _conv_modules(model)
    candidates = []
    for group in channel_coupling(graph).prunable:
        producers = [m for m in group.producers if m.tensor.endswith("weight")]
        if not any(m.layer in convs for m in producers):
            continue
        count = filters_to_remove(group.num_channels, pruning_step)
        if count > 0:
            candidates.append(GreedyCandidate(producers[0].tensor, group, group.num_channels, count))
    return candidates


def prune_group(
    model: nn.Module,
    candidate: GreedyCandidate,
    *,
    dataset: str | None = None,
    example: torch.Tensor | None = None,
) -> tuple[nn.Module, int]:
    """A copy of ``model`` without ``candidate``'s lowest-L1 filters; ``model`` is left untouched.

    The group's filters are ranked jointly by the L1 norms of all its producer weights (so a residual
    stage loses the same channels in every convolution that adds into it), masked, then physically
    removed with the channels they fed. The thinning plan is recorded on the copy, so a checkpoint
    of it rebuilds the smaller shapes.

    Returns:
        The pruned copy and the number of channels removed.
    """
    from distiller.thinning import thin_model  # thinning imports the graph and folding machinery

    pruned = copy.deepcopy(model)
    tensors = {normalize_module_name(k): v.detach() for k, v in pruned.named_parameters()}
    # coupled_group_masks floors fraction * channels; half a channel of margin makes the floor exact.
    fraction = (candidate.num_to_remove + 0.5) / candidate.num_channels
    masks = coupled_group_masks([candidate.group], tensors, fraction, roles=("producer",))
    report = thin_model(pruned, masks, dataset=dataset, example=example, mode="filters")
    return pruned, report.num_removed


# --- the search ----------------------------------------------------------------------------------


@dataclass
class CandidateResult:
    """How one candidate scored in one iteration."""

    name: str
    removed: int
    top1: float
    top5: float
    loss: float
    seconds: float


@dataclass
class GreedyRecord:
    """One iteration: the candidate kept and the network it left (a row of ``greedy.csv``)."""

    iteration: int
    top1: float
    top5: float
    loss: float
    param_name: str
    normalized_macs: float  # conv MACs / conv MACs of the starting network
    total_macs: int  # conv MACs per sample after the iteration
    densities: list[float]  # per conv weight of the starting network, see weight_densities
    channels_removed: int
    finetune_epochs: float
    candidates: list[CandidateResult] = field(default_factory=list)
    seconds: float = 0.0

    def csv_row(self) -> list[object]:
        """The row in :data:`CSV_COLUMNS` order; ``densities`` is one cell, a list, as the original wrote it."""
        densities = str([round(d, 6) for d in self.densities])
        return [self.iteration, self.top1, self.param_name, self.normalized_macs, self.total_macs, densities]


@dataclass
class GreedyResult:
    """The outcome of a search.

    Attributes:
        records: one per iteration, in order.
        model: the network of the last iteration (the starting model if none ran).
        stop_reason: ``"target"`` (MACs reached the target), ``"exhausted"`` (no candidate could be
            pruned further) or ``"max_iterations"``.
        dense_macs: conv MACs of the starting network.
        layers: names of the weights the records' ``densities`` refer to, in order.
    """

    records: list[GreedyRecord]
    model: nn.Module
    stop_reason: str
    dense_macs: int
    layers: list[str]


def _as_scores(value: object) -> Scores:
    if hasattr(value, "top1"):  # an EvalResult
        return float(value.top1), float(value.top5), float(value.loss)  # type: ignore[attr-defined]
    top1, top5, loss = value  # type: ignore[misc]
    return float(top1), float(top5), float(loss)


def greedy_filter_pruning(
    model: nn.Module,
    *,
    target_density: float,
    evaluate: Callable[[nn.Module], Scores],
    pruning_step: float = 0.10,
    finetune: Callable[[nn.Module, int, float], object] | None = None,
    ft_epochs: float = 1,
    finetuning_policy: str = "constant",
    dataset: str | None = None,
    example: torch.Tensor | None = None,
    on_iteration: Callable[[GreedyRecord, nn.Module], object] | None = None,
    max_iterations: int | None = None,
) -> GreedyResult:
    """Greedily remove filters until the convolutions' MACs are ``target_density`` of the start.

    ``model`` itself is never modified: every candidate is pruned on a copy, and the kept copy is
    the next iteration's network.

    Args:
        model: the (trained) network to shrink; it must trace with ``torch.fx``.
        target_density: stop once conv MACs <= ``target_density`` x the starting conv MACs.
        evaluate: ``evaluate(model) -> (top1, top5, loss)`` (or an object with those attributes),
            on data the final test does not use (a validation split).
        pruning_step: fraction of a candidate layer's filters removed per try.
        finetune: ``finetune(model, iteration, epochs)`` trains a pruned copy for ``epochs``
            (a float, see :func:`finetuning_epochs`); it must give every candidate of an iteration
            the same data, or the ranking compares luck. Not called when ``epochs`` is 0; None: no
            fine-tuning.
        ft_epochs: the fine-tuning amount the policy scales (``--greedy-ft-epochs``).
        finetuning_policy: ``constant`` or ``linear-grow`` (``--greedy-finetuning-policy``).
        dataset: dataset whose input shape the graph is traced with (default: ``model.input_shape``).
        example: an example input batch instead of ``dataset``.
        on_iteration: called with each iteration's record and network (save a checkpoint, a CSV row).
        max_iterations: stop after this many iterations (None: only the target or exhaustion stops).

    Returns:
        The records, the final network and why the search stopped.

    Raises:
        ConfigError: a bad argument, or the model has no convolution whose filters one step can
            remove.
    """
    check_greedy_arguments(target_density, pruning_step)
    finetuning_epochs(finetuning_policy, ft_epochs, 1.0)  # validates the policy before any work
    graph = build_graph(model, dataset, example)
    dense_macs = conv_macs(graph)
    dense_sizes = conv_weight_sizes(model)
    if dense_macs == 0:
        raise ConfigError(
            f"--greedy prunes convolution filters, and {type(model).__name__} has no convolution with MACs."
        )
    records: list[GreedyRecord] = []
    current, macs = model, dense_macs
    stop_reason = "target"
    while macs > target_density * dense_macs:
        iteration = len(records) + 1
        if max_iterations is not None and iteration > max_iterations:
            stop_reason = "max_iterations"
            break
        candidates = greedy_candidates(current, graph, pruning_step)
        if not candidates and iteration == 1:
            raise ConfigError(
                f"--greedy found no convolution filters to remove in {type(model).__name__}: either no coupled "
                f"channel group that a convolution produces is prunable, or --greedy-pruning-step {pruning_step} "
                "rounds to zero filters in every layer (raise it)."
            )
        epochs = finetuning_epochs(finetuning_policy, ft_epochs, macs / dense_macs)
        found = _try_candidates(current, candidates, iteration, epochs, finetune, evaluate, dataset, example)
        if found is None:
            stop_reason = "exhausted"
            log.warning(
                "Greedy pruning stopped at %.2f%% of the convolution MACs (target %.2f%%): no layer can lose "
                "another filter at --greedy-pruning-step %g.",
                100 * macs / dense_macs,
                100 * target_density,
                pruning_step,
            )
            break
        current, best, results, seconds = found
        graph = build_graph(current, dataset, example)
        macs = conv_macs(graph)
        record = GreedyRecord(
            iteration=iteration,
            top1=best.top1,
            top5=best.top5,
            loss=best.loss,
            param_name=best.name,
            normalized_macs=macs / dense_macs,
            total_macs=macs,
            densities=weight_densities(dense_sizes, current),
            channels_removed=best.removed,
            finetune_epochs=epochs,
            candidates=results,
            seconds=seconds,
        )
        records.append(record)
        log.info(
            "Iteration %d: kept %s (-%d channels): top1 %.3f, conv MACs %d (%.2f%% of %d) (%.1fs)",
            iteration,
            record.param_name,
            record.channels_removed,
            record.top1,
            macs,
            100 * record.normalized_macs,
            dense_macs,
            record.seconds,
        )
        if on_iteration is not None:
            on_iteration(record, current)
    else:
        log.info("Greedy pruning reached the target: %.2f%% of the convolution MACs.", 100 * macs / dense_macs)
    return GreedyResult(records, current, stop_reason, dense_macs, list(dense_sizes))


def _try_candidates(
    model: nn.Module,
    candidates: list[GreedyCandidate],
    iteration: int,
    epochs: float,
    finetune: Callable[[nn.Module, int, float], object] | None,
    evaluate: Callable[[nn.Module], Scores],
    dataset: str | None,
    example: torch.Tensor | None,
) -> tuple[nn.Module, CandidateResult, list[CandidateResult], float] | None:
    """Prune, fine-tune and score every candidate; the best copy, its result, all results and the time.

    Only the best copy so far is kept alive, so memory holds at most two copies besides ``model``.
    Returns None when no candidate removed anything.
    """
    start = time.perf_counter()
    results: list[CandidateResult] = []
    best: tuple[nn.Module, CandidateResult] | None = None
    for candidate in candidates:
        t0 = time.perf_counter()
        pruned, removed = prune_group(model, candidate, dataset=dataset, example=example)
        if removed == 0:
            log.debug("Iteration %d: %s removed no channel; skipped", iteration, candidate.name)
            continue
        if finetune is not None and epochs > 0:
            finetune(pruned, iteration, epochs)
        scores = _as_scores(evaluate(pruned))
        result = CandidateResult(candidate.name, removed, *scores, seconds=time.perf_counter() - t0)
        results.append(result)
        log.info(
            "Iteration %d: %-32s -%d of %d channels: top1 %.3f  top5 %.3f  loss %.4f (%.1fs)",
            iteration,
            candidate.name,
            removed,
            candidate.num_channels,
            *scores,
            result.seconds,
        )
        if best is None or selection_key(scores) > selection_key(_scores(best[1])):
            best = (pruned, result)
    if best is None:
        return None
    return best[0], best[1], results, time.perf_counter() - start


def _scores(result: CandidateResult) -> Scores:
    return result.top1, result.top5, result.loss
