"""`distiller classify --greedy`: greedy filter pruning end to end (digits; CIFAR-10 when the data is there)."""

from __future__ import annotations

import csv
import re

import pytest
import torch
from torch import nn

from distiller.apps.loops import evaluate
from distiller.checkpoint import load_checkpoint
from distiller.data import load_data
from distiller.models import create_model
from shared_data import CHECKPOINTS, CIFAR10_DIR, require

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-j", "0", "-b", "64", "--deterministic")
GREEDY = ("--greedy", "--greedy-target-density", "0.7", "--greedy-pruning-step", "0.2", "--greedy-ft-epochs", "1")
COLUMNS = ["iteration", "top1", "param_name", "normalized_macs", "total_macs", "densities"]
CHECKPOINT_NAME = re.compile(r"greedy__(\d{3})__([\d.]+)__([\d.]+)_checkpoint\.pth\.tar")


def read_rows(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [dict(zip(header, row)) for row in reader]


def check_greedy_csv(run, target):
    """The CSV has the original's columns, MACs fall every row, and the last row reaches the target."""
    header, rows = read_rows(run.saved("greedy.csv"))
    assert header == COLUMNS
    assert [int(r["iteration"]) for r in rows] == list(range(1, len(rows) + 1))
    macs = [int(r["total_macs"]) for r in rows]
    assert all(a > b for a, b in zip(macs, macs[1:]))
    normalized = [float(r["normalized_macs"]) for r in rows]
    assert normalized[0] < 1.0 and normalized[-1] <= target and all(n > target for n in normalized[:-1])
    for row in rows:
        densities = [float(d) for d in row["densities"].strip("[]").split(",")]
        assert densities and all(0.0 < d <= 1.0 for d in densities)
    return rows


def iteration_checkpoints(run):
    """{iteration: path} of the announced per-iteration checkpoints."""
    found = {}
    for path in re.findall(r"^Saved: (.+)$", run.out, re.MULTILINE):
        match = CHECKPOINT_NAME.search(path)
        if match:
            found[int(match.group(1))] = path
    return found


def test_greedy_run_writes_csv_and_checkpoints_that_resume(run_cli, tmp_path):
    run = run_cli("classify", *DIGITS, *GREEDY, "--etrs", "0.2", out_dir=tmp_path / "greedy")
    assert run.code == 0, run.err
    rows = check_greedy_csv(run, 0.7)
    checkpoints = iteration_checkpoints(run)
    assert sorted(checkpoints) == [int(r["iteration"]) for r in rows]
    assert all(r["param_name"] in ("conv1.weight", "conv2.weight") for r in rows)
    assert "Greedy pruning:" in run.out and "target reached" in run.out

    # Each checkpoint is a thinned network that evaluates on the validation split to its logged accuracy.
    loaders = load_data("digits", batch_size=64, validation_split=0.1, seed=0, deterministic=True)
    for row in rows:
        model = create_model("simplenet_digits", "digits")
        loaded = load_checkpoint(checkpoints[int(row["iteration"])], model)
        assert loaded.thinning_plans and loaded.epoch == -1
        assert loaded.extras["greedy"]["param_name"] == row["param_name"]
        result = evaluate(model, loaders.valid, nn.CrossEntropyLoss(), progress=False)
        assert result.top1 == pytest.approx(float(row["top1"]), abs=1e-6)

    # The final network resumes with --resume-from and tests to the run's result line.
    final = run.saved("greedy_0.7_checkpoint.pth.tar")
    ckpt = torch.load(final, weights_only=True)
    assert ckpt["extras"]["test_top1"] == pytest.approx(run.result()[0], abs=1e-3)
    again = run_cli("classify", *DIGITS, "--evaluate", "--resume-from", final, out_dir=tmp_path / "eval")
    assert again.code == 0, again.err
    assert again.result() == run.result()
    last = checkpoints[max(checkpoints)]
    assert run_cli("classify", *DIGITS, "--evaluate", "--resume-from", last, out_dir=tmp_path / "e2").result() == (
        run.result()
    )


def test_linear_grow_without_validation_split_scores_on_training_data(run_cli, tmp_path):
    run = run_cli("classify", *DIGITS, *GREEDY, "--greedy-finetuning-policy", "linear-grow", "--vs", "0",
                  "--etrs", "128", "--evs", "128", out_dir=tmp_path / "g")
    assert run.code == 0, run.err
    assert "never on the test set" in run.out
    check_greedy_csv(run, 0.7)
    run.result()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (("--greedy",), "--greedy-target-density"),
        (("--greedy", "--greedy-target-density", "1.2"), "--greedy-target-density"),
        (("--greedy", "--greedy-target-density", "0.5", "--greedy-pruning-step", "0"), "--greedy-pruning-step"),
        (("--greedy", "--greedy-target-density", "0.5", "--greedy-ft-epochs", "-1"), "--greedy-ft-epochs"),
        (("--greedy", "--greedy-target-density", "0.5", "--evaluate"), "--evaluate"),
        (("--greedy", "--greedy-target-density", "0.5", "--compress", "x.yaml"), "--compress"),
        (("--greedy", "--greedy-target-density", "0.5", "--summary", "compute"), "--summary"),
        (("--greedy", "--greedy-target-density", "0.5", "--amc"), "--amc"),
    ],
)
def test_bad_greedy_flags_are_user_errors(run_cli, tmp_path, flags, fragment):
    run = run_cli("classify", *DIGITS, *flags, out_dir=tmp_path / "logs")
    assert run.code == 2, (run.out, run.err)
    assert run.err.startswith("distiller: error: ") and "Traceback" not in run.err
    assert fragment in run.err
    assert not (tmp_path / "logs").exists()  # rejected before the run dir is made


def test_greedy_flags_are_the_originals():
    from distiller.cli.classify_parser import build_classify_parser

    text = " ".join(build_classify_parser().format_help().split())
    for usage in (
        "[--greedy]",
        "[--greedy-ft-epochs GREEDY_FT_EPOCHS]",
        "[--greedy-target-density GREEDY_TARGET_DENSITY]",
        "[--greedy-pruning-step GREEDY_PRUNING_STEP]",
        "[--greedy-finetuning-policy {constant,linear-grow}]",
        "Greedy Pruning:",
        "policy used for determining how long to fine-tune",
    ):
        assert usage in text
    args = build_classify_parser().parse_args(["--greedy"])
    assert (args.greedy_ft_epochs, args.greedy_target_density, args.greedy_pruning_step) == (1, None, 0.10)
    assert args.greedy_finetuning_policy == "constant"


@pytest.mark.realdata
def test_simplenet_cifar_three_iterations_on_cifar10(run_cli, tmp_path):
    data = require(CIFAR10_DIR)
    run = run_cli(
        "classify", "-a", "simplenet_cifar", data, "-j", "0", "-b", "128", "--deterministic", "--lr", "0.01",
        "--greedy", "--greedy-target-density", "0.65", "--greedy-pruning-step", "0.2",
        "--etrs", "256", "--evs", "256", "--etes", "256", out_dir=tmp_path / "cifar",
    )
    assert run.code == 0, run.err
    rows = check_greedy_csv(run, 0.65)
    assert len(rows) >= 3  # one step removes at most 1/6 of the MACs (conv1: 6 -> 5 filters), so 0.65 needs 3
    assert len(iteration_checkpoints(run)) == len(rows)
    assert "Test: 256 samples" in run.out


@pytest.mark.realdata
@pytest.mark.slow
def test_resnet20_dense_checkpoint_three_iterations(tmp_path):
    """The app's search on the original's trained ResNet-20, stopped after three iterations (12 candidates each)."""
    from distiller.apps.analysis_options import AnalysisOptions
    from distiller.apps.classifier import ClassifierApp
    from distiller.apps.greedy_mode import greedy_search
    from distiller.apps.greedy_options import GreedyOptions
    from distiller.apps.options import ClassifierOptions

    opts = ClassifierOptions(
        arch="resnet20_cifar", data_dir=str(require(CIFAR10_DIR)), workers=0, batch_size=128, lr=0.01,
        deterministic=True, resume_from=str(require(CHECKPOINTS / "checkpoint_trained_dense.pth.tar")),
        effective_train_size=256, effective_valid_size=500, progress=False,
        analysis=AnalysisOptions(tensorboard=False),
        greedy=GreedyOptions(enabled=True, target_density=0.5, pruning_step=0.1),
    )
    app = ClassifierApp(opts, tmp_path)
    result, _ = greedy_search(app, max_iterations=3)
    assert result.stop_reason == "max_iterations" and len(result.records) == 3
    assert all(len(r.candidates) == 12 for r in result.records)
    header, rows = read_rows(tmp_path / "greedy.csv")
    assert header == COLUMNS and len(rows) == 3
    macs = [result.dense_macs] + [int(r["total_macs"]) for r in rows]
    assert all(a > b for a, b in zip(macs, macs[1:]))
    assert result.dense_macs == 40_813_184 - 640  # all convolutions; the classifier's 640 MACs are not counted
    assert min(float(r["top1"]) for r in rows) > 85.0  # a 10% step of one layer costs a trained network little
