"""Greedy filter pruning: the pure parts, candidate pruning, and the search on tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.graph import build_graph
from distiller.models import create_model
from distiller.pruning.greedy import (
    CSV_COLUMNS,
    GreedyRecord,
    check_greedy_arguments,
    conv_macs,
    conv_weight_sizes,
    filters_to_remove,
    finetuning_epochs,
    greedy_candidates,
    greedy_filter_pruning,
    prune_group,
    selection_key,
    weight_densities,
)
from distiller.thinning import applied_thinning_plans


def digits_model() -> nn.Module:
    return create_model("simplenet_digits", "digits")


def conv1_width_scores(model: nn.Module) -> tuple[float, float, float]:
    """A fake evaluation that prefers networks whose conv1 kept more filters (so conv2 is pruned)."""
    return float(model.conv1.out_channels), 100.0, 1.0


# --- pure parts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "step", "expected"),
    [(16, 0.1, 2), (6, 0.1, 1), (4, 0.1, 0), (5, 0.1, 1), (10, 0.25, 3), (2, 0.9, 1), (1, 0.5, 0), (32, 0.2, 6)],
)
def test_filters_to_remove_rounds_half_up_and_keeps_one(channels, step, expected):
    assert filters_to_remove(channels, step) == expected


def test_constant_policy_fine_tunes_the_same_amount_every_iteration():
    assert [finetuning_epochs("constant", 2, m) for m in (1.0, 0.8, 0.5)] == [2.0, 2.0, 2.0]


def test_linear_grow_policy_starts_at_zero_and_grows_as_macs_shrink():
    amounts = [finetuning_epochs("linear-grow", 2, m) for m in (1.0, 0.9, 0.75, 0.5)]
    assert amounts == pytest.approx([0.0, 0.2, 0.5, 1.0])
    assert amounts == sorted(amounts)


def test_fine_tuning_policy_errors_name_the_flag():
    with pytest.raises(ConfigError, match="--greedy-finetuning-policy"):
        finetuning_epochs("exponential", 1, 1.0)
    with pytest.raises(ConfigError, match="--greedy-ft-epochs"):
        finetuning_epochs("constant", -1, 1.0)


@pytest.mark.parametrize(("density", "step", "flag"), [
    (0.0, 0.1, "--greedy-target-density"),
    (1.0, 0.1, "--greedy-target-density"),
    (1.5, 0.1, "--greedy-target-density"),
    (0.5, 0.0, "--greedy-pruning-step"),
    (0.5, 1.0, "--greedy-pruning-step"),
    (0.5, -0.2, "--greedy-pruning-step"),
])
def test_out_of_range_arguments_name_the_flag(density, step, flag):
    with pytest.raises(ConfigError, match=flag):
        check_greedy_arguments(density, step)


def test_selection_key_orders_by_top1_then_top5_then_lower_loss():
    ranked = sorted([(50, 90, 0.5), (60, 80, 0.9), (50, 95, 0.7), (50, 95, 0.6)], key=selection_key, reverse=True)
    assert ranked == [(60, 80, 0.9), (50, 95, 0.6), (50, 95, 0.7), (50, 90, 0.5)]


def test_csv_row_has_the_original_columns():
    record = GreedyRecord(3, 91.5, 92.0, 0.3, "conv1.weight", 0.75, 1200, [1.0, 0.8125], 2, 1.0)
    assert CSV_COLUMNS == ("iteration", "top1", "param_name", "normalized_macs", "total_macs", "densities")
    assert record.csv_row() == [3, 91.5, "conv1.weight", 0.75, 1200, "[1.0, 0.8125]"]


# --- candidates -------------------------------------------------------------------------------------


def test_candidates_are_coupled_groups_produced_by_convolutions():
    resnet = create_model("resnet20_cifar", "cifar10")
    names = [c.name for c in greedy_candidates(resnet, build_graph(resnet, "cifar10"), 0.1)]
    # A residual stage is one candidate, named after its first producer; the classifier is never one.
    assert names[:2] == ["conv1.weight", "layer1.0.conv1.weight"]
    assert len(names) == 12 and "layer1.0.conv2.weight" not in names and "fc.weight" not in names
    simple = create_model("simplenet_cifar", "cifar10")  # fc1/fc2 groups are prunable, but not filters
    assert [c.name for c in greedy_candidates(simple, build_graph(simple, "cifar10"), 0.1)] == [
        "conv1.weight",
        "conv2.weight",
    ]


def test_prune_group_removes_the_lowest_l1_filters_on_a_copy():
    model = digits_model()
    with torch.no_grad():
        model.conv1.weight.mul_(10)
        model.conv1.weight[[3, 7, 11]] *= 0.01  # the three weakest filters
    kept = [i for i in range(16) if i not in (3, 7, 11)]
    before = model.conv1.weight.detach().clone()
    candidate = greedy_candidates(model, build_graph(model), 0.2)[0]
    assert (candidate.name, candidate.num_to_remove) == ("conv1.weight", 3)
    pruned, removed = prune_group(model, candidate)
    assert removed == 3
    assert model.conv1.out_channels == 16 and torch.equal(model.conv1.weight, before)  # the original is untouched
    assert pruned.conv1.out_channels == 13 and pruned.conv2.in_channels == 13
    assert torch.equal(pruned.conv1.weight, before[kept])
    assert applied_thinning_plans(pruned) and not applied_thinning_plans(model)
    assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_weight_densities_follow_removed_filters_and_channels():
    model = digits_model()
    dense = conv_weight_sizes(model)
    pruned, _ = prune_group(model, greedy_candidates(model, build_graph(model), 0.25)[0])  # conv1: 16 -> 12
    assert list(dense) == ["conv1.weight", "conv2.weight"]
    assert weight_densities(dense, pruned) == pytest.approx([0.75, 0.75])  # conv2 lost its input channels


# --- the search -------------------------------------------------------------------------------------


def test_search_reduces_macs_every_iteration_and_stops_at_the_target():
    model = digits_model()
    dense = conv_macs(build_graph(model))
    seen = []
    result = greedy_filter_pruning(
        model,
        target_density=0.6,
        pruning_step=0.2,
        evaluate=conv1_width_scores,
        on_iteration=lambda record, net: seen.append((record.iteration, conv_macs(build_graph(net)))),
    )
    records = result.records
    assert result.stop_reason == "target" and result.dense_macs == dense
    assert [r.iteration for r in records] == list(range(1, len(records) + 1)) and len(records) >= 2
    macs = [dense] + [r.total_macs for r in records]
    assert all(a > b for a, b in zip(macs, macs[1:]))
    assert records[-1].normalized_macs <= 0.6 < (records[-2].normalized_macs if len(records) > 1 else 1.0)
    assert seen == [(r.iteration, r.total_macs) for r in records]
    assert all(r.param_name == "conv2.weight" for r in records)  # the evaluation prefers a wide conv1
    assert model.conv2.out_channels == 32 and result.model.conv2.out_channels < 32  # input model untouched
    assert result.layers == ["conv1.weight", "conv2.weight"]


def test_ties_are_broken_by_top5_then_by_lower_loss():
    def by_loss(model):  # equal top1/top5; pruning conv1 gives the lower loss
        return 50.0, 90.0, 1.0 if model.conv1.out_channels < 16 else 2.0

    result = greedy_filter_pruning(digits_model(), target_density=0.9, pruning_step=0.2, evaluate=by_loss)
    assert result.records[0].param_name == "conv1.weight"

    def by_top5(model):  # equal top1; pruning conv2 gives the higher top5 despite a higher loss
        return 50.0, 95.0 if model.conv2.out_channels < 32 else 90.0, 5.0 if model.conv2.out_channels < 32 else 1.0

    result = greedy_filter_pruning(digits_model(), target_density=0.9, pruning_step=0.2, evaluate=by_top5)
    assert result.records[0].param_name == "conv2.weight"


def test_chosen_candidate_is_the_best_of_the_fine_tuned_candidates_on_digits():
    from distiller.apps.loops import evaluate, train_one_epoch
    from distiller.data import load_data

    loaders = load_data("digits", batch_size=64, effective_train_size=256, seed=0)
    criterion = nn.CrossEntropyLoss()
    model = digits_model()
    for _ in range(2):  # a little training, so pruning choices matter
        train_one_epoch(model, loaders.train, criterion, torch.optim.SGD(model.parameters(), lr=0.1), None, 0,
                        progress=False)

    def finetune(net, iteration, epochs):
        torch.manual_seed(iteration)
        train_one_epoch(net, loaders.train, criterion, torch.optim.SGD(net.parameters(), lr=0.01), None, iteration,
                        progress=False)

    result = greedy_filter_pruning(
        model,
        target_density=0.75,
        pruning_step=0.25,
        evaluate=lambda net: evaluate(net, loaders.valid, criterion, progress=False),
        finetune=finetune,
    )
    for record in result.records:
        assert len(record.candidates) == 2
        best = max(record.candidates, key=lambda c: selection_key((c.top1, c.top5, c.loss)))
        assert record.param_name == best.name
        assert (record.top1, record.top5, record.loss) == (best.top1, best.top5, best.loss)
    final = evaluate(result.model, loaders.valid, criterion, progress=False)
    assert final.top1 == pytest.approx(result.records[-1].top1)  # the kept network is the scored one


def test_linear_grow_fine_tunes_more_as_the_network_shrinks():
    calls = []
    result = greedy_filter_pruning(
        digits_model(),
        target_density=0.5,
        pruning_step=0.2,
        evaluate=conv1_width_scores,
        finetune=lambda net, iteration, epochs: calls.append((iteration, epochs)),
        ft_epochs=2,
        finetuning_policy="linear-grow",
    )
    records = result.records
    assert records[0].finetune_epochs == 0.0 and all(it > 1 for it, _ in calls)  # nothing to recover at first
    expected = {r.iteration + 1: 2 * (1 - r.normalized_macs) for r in records[:-1]}
    assert {it: ep for it, ep in calls} == pytest.approx(expected)
    assert [r.finetune_epochs for r in records[1:]] == pytest.approx(list(expected.values()))
    assert [ep for _, ep in calls] == sorted(ep for _, ep in calls)


def test_constant_policy_calls_finetune_for_every_candidate():
    calls = []
    greedy_filter_pruning(
        digits_model(), target_density=0.9, pruning_step=0.2, evaluate=conv1_width_scores, ft_epochs=3,
        finetune=lambda net, iteration, epochs: calls.append((iteration, epochs)),
    )
    assert calls == [(1, 3.0), (1, 3.0)]  # two candidates in the single iteration


def test_search_stops_when_no_layer_can_lose_a_filter():
    result = greedy_filter_pruning(digits_model(), target_density=0.001, pruning_step=0.5, evaluate=conv1_width_scores)
    assert result.stop_reason == "exhausted"
    assert result.model.conv1.out_channels == 1 and result.model.conv2.out_channels == 1
    assert result.records[-1].normalized_macs > 0.001


def test_max_iterations_and_a_step_too_small_for_every_layer():
    result = greedy_filter_pruning(
        digits_model(), target_density=0.1, pruning_step=0.2, evaluate=conv1_width_scores, max_iterations=1
    )
    assert result.stop_reason == "max_iterations" and len(result.records) == 1
    with pytest.raises(ConfigError, match="--greedy-pruning-step"):
        greedy_filter_pruning(digits_model(), target_density=0.5, pruning_step=0.01, evaluate=conv1_width_scores)


def test_models_without_convolutions_are_rejected():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with pytest.raises(ConfigError, match="no convolution"):
        greedy_filter_pruning(mlp, target_density=0.5, evaluate=conv1_width_scores, example=torch.randn(1, 1, 8, 8))
