"""Sensitivity analysis: levels, one-shot pruning and restore, coupled groups, workers, CSV/PNG."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from distiller.analysis import (
    CachedEvaluation,
    load_sensitivities_csv,
    perform_sensitivity_analysis,
    sensitivities_to_csv,
    sensitivities_to_png,
    sensitivity_levels,
    sensitivity_params,
)
from distiller.analysis.sensitivity_io import CSV_HEADER
from distiller.apps.loops import evaluate
from distiller.errors import ConfigError
from distiller.models import create_model

RESNET_STAGE1 = ["conv1.weight", "layer1.0.conv2.weight", "layer1.1.conv2.weight", "layer1.2.conv2.weight"]


def digits_model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("simplenet_digits", "digits").eval()


Batch = tuple[torch.Tensor, torch.Tensor]


def batches(shape: tuple[int, ...], n: int = 3, size: int = 32, seed: int = 1) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, *shape, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


class Recorder:
    """A test_func that evaluates and also records every weight's zero count at each call."""

    def __init__(self, evaluation: CachedEvaluation) -> None:
        self.evaluation = evaluation
        self.calls: list[dict[str, torch.Tensor]] = []

    def __call__(self, model: nn.Module):
        self.calls.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return self.evaluation(model)


def changed(call: dict[str, torch.Tensor], dense: dict[str, torch.Tensor]) -> list[str]:
    return [n for n, t in call.items() if not torch.equal(t, dense[n])]


# --- levels -----------------------------------------------------------------------------------


def test_levels_are_numpy_arange_without_stop_and_rounded() -> None:
    assert sensitivity_levels(0.0, 0.10, 0.05) == [0.0, 0.05]
    default = sensitivity_levels(0.0, 0.95, 0.05)
    assert len(default) == 19 and default[0] == 0.0 and default[-1] == 0.9
    assert default[3] == 0.15 and repr(default[3]) == "0.15"
    assert sensitivity_levels(0.0, 1.05, 0.25) == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize(
    ("start", "stop", "step", "words"),
    [(0.0, 0.5, 0.0, "STEP must be positive"), (0.5, 0.1, 0.05, "gives no levels"), (0.0, 1.6, 0.5, "[0, 1]")],
)
def test_bad_ranges_are_config_errors(start: float, stop: float, step: float, words: str) -> None:
    with pytest.raises(ConfigError, match="sense-range|Sparsity levels") as err:
        sensitivity_levels(start, stop, step)
    assert words in str(err.value)


# --- what is analysed ---------------------------------------------------------------------------


def test_default_parameters_per_kind() -> None:
    model = digits_model()  # conv1 (16, 1, 3, 3), conv2 (32, 16, 3, 3), fc (10, 512)
    assert sensitivity_params(model, "element") == ["conv1.weight", "conv2.weight", "fc.weight"]
    assert sensitivity_params(model, "filter") == ["conv1.weight", "conv2.weight"]
    assert sensitivity_params(model, "channel") == ["conv2.weight"]  # conv1 has a single input channel


def test_errors_name_the_problem() -> None:
    model = digits_model()
    evaluation = CachedEvaluation(batches((1, 8, 8), n=1))
    with pytest.raises(ConfigError, match="'conv3.weight' is not a parameter.*conv1.weight|conv2.weight"):
        perform_sensitivity_analysis(model, ["conv3.weight"], [0.0], evaluation, "element")
    with pytest.raises(ConfigError, match="unknown; use one of element, filter, channel"):
        perform_sensitivity_analysis(model, None, [0.0], evaluation, "kernel")
    with pytest.raises(ConfigError, match="filter.*channel"):
        perform_sensitivity_analysis(model, None, [0.0], evaluation, "element", coupled=True)
    with pytest.raises(ConfigError, match="workers must be a positive integer"):
        perform_sensitivity_analysis(model, None, [0.0], evaluation, "element", workers=0)
    with pytest.raises(ConfigError, match="by pickling"):
        perform_sensitivity_analysis(model, None, [0.0, 0.5], lambda m: evaluation(m), "element", workers=2)


# --- one-shot pruning -------------------------------------------------------------------------


def test_element_analysis_prunes_exact_fractions_in_the_evaluated_model_and_restores_it() -> None:
    model = digits_model()
    dense_state = {k: v.clone() for k, v in model.state_dict().items()}
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    evaluation = CachedEvaluation(batches((1, 8, 8)))
    recorder = Recorder(evaluation)
    levels = [0.0, 0.25, 0.5]
    table = perform_sensitivity_analysis(model, None, levels, recorder, "element")

    assert list(table) == ["conv1.weight", "conv2.weight", "fc.weight"]
    assert all(list(rows) == levels for rows in table.values())
    expected_dense = evaluation(model)
    assert all(rows[0.0] == expected_dense for rows in table.values())
    # One dense evaluation for every level-0 row, then each (parameter, level) once.
    assert len(recorder.calls) == 1 + 3 * 2
    assert changed(recorder.calls[0], dense) == []
    for call, (name, level) in zip(recorder.calls[1:], [(n, lv) for n in table for lv in levels[1:]]):
        assert changed(call, dense) == [name]
        pruned = call[name]
        assert int((pruned == 0).sum()) == round(level * pruned.numel())
        kept = pruned != 0
        assert torch.equal(pruned[kept], dense[name][kept])
        smallest_kept = dense[name][kept].abs().min()
        assert bool((dense[name][~kept].abs() <= smallest_kept).all())  # the smallest magnitudes went
    for key, value in model.state_dict().items():
        assert torch.equal(value, dense_state[key]), key


@pytest.mark.parametrize(("kind", "dim"), [("filter", 0), ("channel", 1)])
def test_structure_analysis_prunes_l1_lowest_structures(kind: str, dim: int) -> None:
    model = digits_model()
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    recorder = Recorder(CachedEvaluation(batches((1, 8, 8), n=1)))
    table = perform_sensitivity_analysis(model, ["conv2.weight"], [0.0, 0.3], recorder, kind)
    assert list(table) == ["conv2.weight"]
    pruned = recorder.calls[1]["conv2.weight"]
    reduce_dims = [d for d in range(4) if d != dim]
    zero = (pruned == 0).all(dim=reduce_dims)
    n = pruned.shape[dim]
    assert int(zero.sum()) == math.floor(0.3 * n)  # rounded down, as L1RankedStructureParameterPruner
    norms = dense["conv2.weight"].abs().mean(dim=reduce_dims)
    assert norms[zero].max() <= norms[~zero].min()
    assert torch.equal(model.conv2.weight, dense["conv2.weight"])


def test_model_is_restored_when_test_func_fails() -> None:
    model = digits_model()
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    calls = []

    def failing(m: nn.Module):
        calls.append(1)
        if len(calls) == 2:  # the first pruned evaluation
            raise RuntimeError("evaluation failed")
        return 0.0, 0.0, 0.0

    with pytest.raises(RuntimeError, match="evaluation failed"):
        perform_sensitivity_analysis(model, None, [0.0, 0.5], failing, "element")
    for name, p in model.named_parameters():
        assert torch.equal(p, dense[name]), name


def test_coupled_group_rows_prune_every_member_alike() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20_cifar", "cifar10").eval()
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    recorder = Recorder(CachedEvaluation(batches((3, 32, 32), n=1, size=4)))
    table = perform_sensitivity_analysis(
        model, ["layer1.1.conv2.weight"], [0.0, 0.5], recorder, "filter", coupled=True, dataset="cifar10"
    )
    assert list(table) == ["group0:" + ";".join(RESNET_STAGE1)]
    call = recorder.calls[1]
    assert sorted(changed(call, dense)) == sorted(RESNET_STAGE1)  # producers only: consumers, BNs untouched
    zero_filters = [(call[n] == 0).all(dim=(1, 2, 3)).nonzero().flatten().tolist() for n in RESNET_STAGE1]
    assert len(zero_filters[0]) == 8  # half of the stage's 16 channels
    assert all(z == zero_filters[0] for z in zero_filters)
    for name, p in model.named_parameters():
        assert torch.equal(p, dense[name]), name


def test_channel_groups_prune_consumers_including_linear_columns() -> None:
    model = digits_model()
    recorder = Recorder(CachedEvaluation(batches((1, 8, 8), n=1)))
    table = perform_sensitivity_analysis(model, None, [0.0, 0.5], recorder, "channel", coupled=True)
    assert list(table) == ["group0:conv2.weight", "group1:fc.weight"]
    fc = recorder.calls[2]["fc.weight"]  # group1 at 0.5: 16 of conv2's 32 channels, 16 columns each
    assert int((fc == 0).all(dim=0).sum()) == 16 * 16


def test_parallel_workers_give_the_serial_table() -> None:
    # Built from torch.nn only: a worker then imports no model zoo to unpickle it, which keeps the test short.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)
    ).eval()
    evaluation = CachedEvaluation(batches((1, 8, 8)))
    levels = [0.0, 0.3, 0.6]
    serial = perform_sensitivity_analysis(model, None, levels, evaluation, "element")
    parallel = perform_sensitivity_analysis(model, None, levels, evaluation, "element", workers=2)
    assert parallel == serial
    assert list(parallel) == list(serial)


# --- evaluation ---------------------------------------------------------------------------------


def test_cached_evaluation_matches_the_app_evaluation() -> None:
    model = digits_model()
    data = batches((1, 8, 8), n=3, size=20)
    criterion = nn.CrossEntropyLoss()
    cached = CachedEvaluation.from_loader(data, criterion)
    expected = evaluate(model, data, criterion, progress=False)
    assert cached(model) == pytest.approx((expected.top1, expected.top5, expected.loss), rel=0, abs=1e-12)
    assert cached.num_samples == 60


# --- CSV and PNG --------------------------------------------------------------------------------


def test_csv_round_trip_and_png(tmp_path) -> None:
    model = digits_model()
    table = perform_sensitivity_analysis(
        model, None, sensitivity_levels(0.0, 0.2, 0.05), CachedEvaluation(batches((1, 8, 8), n=1)), "element"
    )
    path = sensitivities_to_csv(table, tmp_path / "out" / "sensitivity.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CSV_HEADER) == "parameter,sparsity,top1,top5,loss"
    assert len(lines) == 1 + 3 * 4
    assert lines[4].startswith("conv1.weight,0.15,")  # not 0.15000000000000002
    assert load_sensitivities_csv(path) == table
    png = sensitivities_to_png(table, tmp_path / "sensitivity.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("param,sparsity,top1,top5,loss\n", "header must be 'parameter,sparsity,top1,top5,loss'"),
        ("parameter,sparsity,top1,top5,loss\nconv1.weight,0.0,9x,1,1\n", "line 2: column 'top1' must be a number"),
        ("parameter,sparsity,top1,top5,loss\nconv1.weight,0.0,1,1\n", "line 2: expected 5 fields"),
        ("parameter,sparsity,top1,top5,loss\nconv1.weight,1.5,1,1,1\n", "line 2: sparsity 1.5 is outside"),
        ("parameter,sparsity,top1,top5,loss\na,0.0,1,1,1\na,0.0,1,1,1\n", "line 3: 'a' at sparsity 0.0 appears"),
        ("parameter,sparsity,top1,top5,loss\n", "no rows"),
    ],
)
def test_bad_csv_errors_name_the_file_and_line(tmp_path, text: str, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_sensitivities_csv(path)
    assert str(path) in str(err.value) and words in str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_sensitivities_csv(tmp_path / "missing.csv")
