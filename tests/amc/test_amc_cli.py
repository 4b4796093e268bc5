"""`distiller classify --amc`: AMC end to end on digits, its files, and its flag errors."""

from __future__ import annotations

import csv

import pytest
import torch

from distiller.checkpoint import load_checkpoint
from distiller.models import create_model
from distiller.summary import compute_summary

pytest.importorskip("stable_baselines3")

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-j", "0", "-b", "64", "--deterministic")
AMC = ("--amc", "--amc-target-density", "0.5", "--amc-ft-epochs", "0", "--evs", "256")


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("algo", ["DDPG", "Random-policy"])
def test_amc_search_writes_its_files_and_the_best_network_resumes(run_cli, tmp_path, algo):
    # The starting point: a briefly trained network.
    train = run_cli(
        "classify", *DIGITS, "--epochs", "2", "--optimizer", "adam", "--lr", "0.01", out_dir=tmp_path / "train"
    )
    assert train.code == 0, train.err
    dense = train.saved("checkpoint.pth.tar")
    run = run_cli(
        "classify",
        *DIGITS,
        *AMC,
        "--amc-agent-algo",
        algo.lower(),
        "--amc-heatup-episodes",
        "2",
        "--amc-training-episodes",
        "2",
        "--resume-from",
        dense,
        "--reset-optimizer",
        out_dir=tmp_path / "amc",
    )
    assert run.code == 0, run.err
    rows = rows_of(run.saved("amc_episodes.csv"))
    assert [int(r["episode"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["normalized_macs"]) <= 0.5 for r in rows)
    assert {"action/conv1", "action/conv2"} <= set(rows[0])
    assert run.saved("amc_rewards.png").stat().st_size > 0
    assert f"AMC ({algo})" in run.out

    schedule = run.saved("amc_best_schedule.yaml")
    valid = run_cli("validate", schedule, "-a", "simplenet_digits", "--dataset", "digits")
    assert valid.code == 0 and "is valid" in valid.out

    best = run.saved("amc_best_checkpoint.pth.tar")
    model = create_model("simplenet_digits", "digits")
    loaded = load_checkpoint(best, model)
    assert loaded.thinning_plans and loaded.extras["amc"]["normalized_macs"] <= 0.5
    assert compute_summary(model).attrs["total_macs"] == loaded.extras["amc"]["macs"]
    best_row = max(rows, key=lambda r: float(r["reward"]))
    assert loaded.extras["amc"]["episode"] == int(best_row["episode"])
    assert torch.load(best, weights_only=True)["extras"]["test_top1"] == pytest.approx(run.result()[0], abs=1e-3)
    again = run_cli("classify", *DIGITS, "--evaluate", "--resume-from", best, out_dir=tmp_path / "eval")
    assert again.code == 0, again.err
    assert again.result() == run.result()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (("--amc",), "--amc-target-density"),
        (("--amc", "--amc-target-density", "1.5"), "--amc-target-density"),
        (("--amc", "--amc-target-density", "0.5", "--amc-action-range", "0.5", "0.2"), "--amc-action-range"),
        (("--amc", "--amc-target-density", "0.5", "--amc-agent-algo", "ClippedPPO-discrete"), "--amc-agent-algo"),
        (("--amc", "--amc-target-density", "0.5", "--amc-ranking-noise", "0.1"), "--amc-ranking-noise"),
        (("--amc", "--amc-target-density", "0.5", "--amc-ft-epochs", "-1"), "--amc-ft-epochs"),
        (("--amc", "--amc-target-density", "0.5", "--amc-training-episodes", "-2"), "--amc-training-episodes"),
        (("--amc", "--amc-target-density", "0.5", "--evaluate"), "--evaluate"),
        (("--amc", "--amc-target-density", "0.5", "--greedy", "--greedy-target-density", "0.5"), "--greedy"),
    ],
)
def test_bad_amc_flags_are_user_errors(run_cli, tmp_path, flags, fragment):
    run = run_cli("classify", *DIGITS, *flags, out_dir=tmp_path / "logs")
    assert run.code == 2, (run.out, run.err)
    assert "Traceback" not in run.err and fragment in run.err
    assert not (tmp_path / "logs").exists()  # rejected before the run dir is made


def test_unreachable_target_fails_before_any_episode(run_cli, tmp_path):
    run = run_cli("classify", *DIGITS, *AMC, "--amc-target-density", "0.01", "--amc-agent-algo", "random")
    assert run.code != 0 and "cannot be reached" in run.err and "Traceback" not in run.err


def test_amc_cfg_restricts_the_search(run_cli, tmp_path):
    cfg = tmp_path / "amc.yaml"
    cfg.write_text("network:\n  simplenet_digits:\n    - conv2\n")
    run = run_cli(
        "classify",
        *DIGITS,
        *AMC,
        "--amc-target-density",
        "0.8",
        "--amc-agent-algo",
        "random",
        "--amc-heatup-episodes",
        "0",
        "--amc-training-episodes",
        "2",
        "--amc-cfg",
        cfg,
        "--amc-save-chkpts",
    )
    assert run.code == 0, run.err
    rows = rows_of(run.saved("amc_episodes.csv"))
    assert [k for k in rows[0] if k.startswith("action/")] == ["action/conv2"]
    for episode in (1, 2):  # --amc-save-chkpts: every episode's network
        model = create_model("simplenet_digits", "digits")
        loaded = load_checkpoint(run.saved(f"amc_episode_{episode:04d}_checkpoint.pth.tar"), model)
        assert model.conv1.out_channels == 16 and loaded.extras["amc"]["layers"] == ["conv2"]
    cfg.write_text("network:\n  resnet20_cifar: [conv1]\n")
    bad = run_cli("classify", *DIGITS, *AMC, "--amc-agent-algo", "random", "--amc-cfg", cfg)
    assert bad.code != 0 and "simplenet_digits" in bad.err


def test_amc_flags_are_the_originals():
    from distiller.cli.classify_parser import build_classify_parser, options_from_args

    parser = build_classify_parser()
    text = " ".join(parser.format_help().split())
    for usage in (
        "[--amc]",
        "[--amc-cfg AMC_CFG_FILE]",
        "[--amc-protocol {mac-constrained,accuracy-guaranteed,",
        "[--amc-action-range LOW HIGH]",
        "[--amc-prune-pattern {filters,channels}]",
        "[--amc-prune-method {l1-rank,stochastic-l1-rank,fm-reconstruction}]",
        "AutoML Compression Arguments:",
    ):
        assert usage in text
    opts = options_from_args(parser.parse_args([])).amc
    assert (opts.enabled, opts.protocol, opts.ft_epochs, opts.heatup_episodes, opts.training_episodes) == (
        False,
        "mac-constrained",
        1,
        100,
        700,
    )
    assert (opts.action_range, opts.agent_algo, opts.reconstruct_pts, opts.group_size) == (
        [0.0, 0.8],
        "ClippedPPO-continuous",
        10,
        1,
    )
    given = ["--amc", "--amc-target-density", "0.5", "--amc-agent-algo", "td3"]
    assert options_from_args(parser.parse_args(given)).amc.agent_algo == "TD3"


@pytest.mark.realdata
def test_amc_on_simplenet_mnist_meets_the_target_and_the_best_network_evaluates(run_cli, tmp_path):
    """The issue's check on real data: simplenet_mnist, tiny subsets, a few DDPG and random episodes."""
    from shared_data import MNIST_DIR, require

    data = require(MNIST_DIR)
    mnist = ("-a", "simplenet_mnist", "-j", "0", "-b", "128", "--deterministic", "--etes", "500")
    train = run_cli("classify", *mnist, "--epochs", "1", "--etrs", "3000", "--lr", "0.05", data, out_dir=tmp_path / "t")
    assert train.code == 0, train.err
    assert train.result()[0] > 60.0  # 79.6 here: briefly trained
    for algo in ("ddpg", "random-policy"):
        run = run_cli(
            "classify",
            *mnist,
            *AMC,
            "--amc-agent-algo",
            algo,
            "--amc-heatup-episodes",
            "2",
            "--amc-training-episodes",
            "2",
            "--resume-from",
            train.saved("checkpoint.pth.tar"),
            "--reset-optimizer",
            data,
            out_dir=tmp_path / algo,
        )
        assert run.code == 0, run.err
        rows = rows_of(run.saved("amc_episodes.csv"))
        assert len(rows) == 4 and all(float(r["normalized_macs"]) <= 0.5 for r in rows)
        assert run.saved("amc_best_schedule.yaml").stat().st_size > 0
        model = create_model("simplenet_mnist", "mnist")
        loaded = load_checkpoint(run.saved("amc_best_checkpoint.pth.tar"), model)
        assert loaded.thinning_plans and compute_summary(model).attrs["total_macs"] == loaded.extras["amc"]["macs"]
        assert run.result()[0] > 10.0  # the thinned best network evaluates on the test subset
