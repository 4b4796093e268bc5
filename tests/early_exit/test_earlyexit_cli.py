"""`distiller classify` with early exits: training, per-exit report before the result line, flag errors."""

from __future__ import annotations

import re

import pytest

from shared_data import CIFAR10_DIR, require

FAKE = ("-a", "resnet20_cifar_earlyexit", "--dataset", "fake", "-j", "0", "-b", "32", "--deterministic")
EXIT_LINE = re.compile(r"Exit (\d+)(?: \(final\))?: Top1 ([\d.]+)\s+Top5 ([\d.]+)\s+taken ([\d.]+)% \((\d+)\)")
TOTALS = re.compile(r"Totals with early exits: Top1 ([\d.]+)\s+Top5 ([\d.]+)")


def _test_report(out: str) -> str:
    """The per-exit report of the test pass (it follows the ``Test:`` title)."""
    start = out.index("Test: Early exit")
    return out[start : out.index("==> Top1", start)]


def _check_report(run, num_exits: int = 2) -> list[tuple]:
    report = _test_report(run.out)
    exits = [m.groups() for m in EXIT_LINE.finditer(report)]
    assert [int(e[0]) for e in exits] == list(range(num_exits))
    assert sum(float(e[3]) for e in exits) == pytest.approx(100.0, abs=0.01)
    totals = TOTALS.search(report)
    assert "Average MACs/sample:" in report
    top1, top5, _ = run.result()  # the last line containing Top1 is the result line (DESIGN §7)
    assert (top1, top5) == (float(totals[1]), float(totals[2]))  # it reports the simulated totals
    return exits


def test_training_reports_every_exit_before_the_result_line(run_cli) -> None:
    run = run_cli("classify", *FAKE, "--epochs", "1", "--etrs", "64",
                  "--earlyexit_lossweights", "0.3", "--earlyexit_thresholds", "1.5")  # fmt: skip
    assert run.code == 0, run.err
    assert "Epoch 0 validation: Early exit (entropy rule, thresholds [1.5])" in run.out
    _check_report(run)
    assert run.out.strip().splitlines()[-1].startswith("==> Top1: ")


def test_evaluate_with_threshold_zero_sends_everything_to_the_final_classifier(run_cli) -> None:
    run = run_cli("classify", *FAKE, "--evaluate", "--earlyexit_thresholds", "0")
    assert run.code == 0, run.err
    exits = _check_report(run)
    assert float(exits[0][3]) == 0.0 and float(exits[1][3]) == 100.0


def test_the_original_ce_rule_is_an_option(run_cli) -> None:
    run = run_cli("classify", *FAKE, "--evaluate", "--earlyexit_thresholds", "100", "--earlyexit-rule", "ce")
    assert run.code == 0, run.err
    assert "Early exit (ce rule" in run.out
    assert float(_check_report(run)[0][3]) == 100.0  # every loss is below 100


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--earlyexit_thresholds", "1.0"), "needs --earlyexit_lossweights"),
        (("--earlyexit_lossweights", "0.3"), "needs --earlyexit_thresholds"),
        (("--earlyexit_lossweights", "0.3", "0.2", "--earlyexit_thresholds", "1"), "has 2 value.*1 early exit"),
        (("--earlyexit_lossweights", "1.0", "--earlyexit_thresholds", "1"), "less than 1"),
        (("--earlyexit_lossweights", "0.3", "--earlyexit_thresholds", "1", "2"), "thresholds has 2 value"),
    ],
)
def test_flag_errors_are_explained_before_any_training(run_cli, flags, message: str) -> None:
    run = run_cli("classify", *FAKE, "--epochs", "1", *flags)
    assert run.code == 2
    assert re.search(message, run.err), run.err


def test_flags_on_a_model_without_exits_are_refused(run_cli) -> None:
    run = run_cli("classify", "-a", "simplenet_cifar", "--dataset", "fake", "--epochs", "1",
                  "--earlyexit_thresholds", "1.0")  # fmt: skip
    assert run.code == 2 and "has none" in run.err


@pytest.mark.parametrize("flags", [("--evaluate", "--confusion"), ("--sense", "filter"), ("--thinnify",)])
def test_modes_that_expect_one_output_refuse_early_exit_models(run_cli, flags) -> None:
    run = run_cli("classify", *FAKE, "--earlyexit_thresholds", "1.0", *flags)
    assert run.code == 2 and "do(es) not support models with early exits" in run.err, run.err


@pytest.mark.realdata
def test_resnet20_cifar_earlyexit_on_cifar10_subsets(run_cli) -> None:
    data = require(CIFAR10_DIR)
    run = run_cli("classify", "-a", "resnet20_cifar_earlyexit", "--earlyexit_thresholds", "0.9",
                  "--earlyexit_lossweights", "0.3", "--epochs", "1", "--etrs", "200", "--etes", "200",
                  "--vs", "0.02", "-b", "50", "-j", "0", "--deterministic", data)  # fmt: skip
    assert run.code == 0, run.err
    assert "Test: 200 samples" in run.out
    _check_report(run)
