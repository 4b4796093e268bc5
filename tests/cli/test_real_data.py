"""The acceptance runs of the foundation on real data (skipped when ../shared/data is absent).

The original Distiller's checkpoints were trained on the full CIFAR-10 training set, so they are
evaluated on the 10,000 test images. Expected values are the measured ones of the checkpoints'
README (`../shared/data/distiller-checkpoints/README.md`).
"""

from __future__ import annotations

import pytest

from shared_data import CHECKPOINTS, CIFAR10_DIR, MNIST_DIR, require

pytestmark = pytest.mark.realdata

LEGACY_CASES = [
    ("checkpoint_trained_dense.pth.tar", (), 91.71),
    ("checkpoint_trained_channel_regularized_resnet20.pth.tar", (), 91.14),
    ("checkpoint_trained_channel_regularized_resnet20_finetuned.pth.tar", (), 91.54),
    ("checkpoint_trained_4D_regularized_5Lremoved.pth.tar", (), 90.72),
    ("checkpoint_trained_4D_regularized_5Lremoved_finetuned.pth.tar", ("--remove-zero-layers",), 91.12),
]


@pytest.mark.parametrize(
    ("filename", "flags", "expected"), LEGACY_CASES, ids=[c[0].split(".")[0] for c in LEGACY_CASES]
)
def test_original_checkpoints_keep_their_accuracy(run_cli, filename, flags, expected):
    ckpt = require(CHECKPOINTS / filename)
    data = require(CIFAR10_DIR)
    run = run_cli(
        "classify", "-a", "resnet20_cifar", "--evaluate", "--resume-from", ckpt, *flags, "-j", "0", "-b", "500", data
    )
    assert run.code == 0, run.err
    top1, _, _ = run.result()
    assert abs(top1 - expected) <= 0.05, run.out
    assert "Test: 10000 samples" in run.out


def test_zero_layers_warning_suggests_the_flag(run_cli):
    ckpt = require(CHECKPOINTS / "checkpoint_trained_4D_regularized_5Lremoved_finetuned.pth.tar")
    run = run_cli(
        "classify",
        "-a",
        "resnet20_cifar",
        "--evaluate",
        "--resume-from",
        ckpt,
        "-j",
        "0",
        "--etes",
        "500",
        require(CIFAR10_DIR),
    )
    assert run.code == 0
    assert "--remove-zero-layers" in run.out and "layer1.0.conv1" in run.out


def test_simplenet_mnist_two_epochs(run_cli):
    run = run_cli(
        "classify",
        "-a",
        "simplenet_mnist",
        "--epochs",
        "2",
        "--lr",
        "0.05",
        "--deterministic",
        "-j",
        "0",
        require(MNIST_DIR),
    )
    assert run.code == 0, run.err
    assert run.result()[0] >= 98.0


def test_inspect_legacy_thinned_checkpoint(run_cli):
    ckpt = require(CHECKPOINTS / "checkpoint_trained_channel_regularized_resnet20.pth.tar")
    run = run_cli("inspect", ckpt)
    assert run.code == 0, run.err
    assert "resnet20_cifar" in run.out and "layer1.0.conv1.weight" in run.out


def test_thinned_original_checkpoint_trains_and_round_trips(run_cli, tmp_path):
    """A thinned legacy checkpoint resumes, trains, and is saved in our format with its thinning plans."""
    ckpt = require(CHECKPOINTS / "checkpoint_trained_channel_regularized_resnet20_finetuned.pth.tar")
    data = require(CIFAR10_DIR)
    train = run_cli(
        "classify",
        "-a",
        "resnet20_cifar",
        "--resume-from",
        ckpt,
        "--reset-optimizer",
        "--epochs",
        "1",
        "--lr",
        "0.0",
        "--etrs",
        "64",
        "--evs",
        "64",
        "--etes",
        "1000",
        "-j",
        "0",
        "-b",
        "64",
        data,
        out_dir=tmp_path / "train",
    )
    assert train.code == 0, train.err
    saved = train.log_dir() / "checkpoint.pth.tar"
    again = run_cli(
        "classify", "-a", "resnet20_cifar", "--evaluate", "--resume-from", saved, "--etes", "1000", "-j", "0", data
    )
    assert again.code == 0, again.err
    assert again.result() == train.result()
    import torch

    plans = torch.load(saved, weights_only=True)["thinning_plans"]
    assert plans and torch.load(saved, weights_only=True)["state_dict"]["layer1.0.conv1.weight"].shape[0] == 11


def test_summary_sparsity_of_original_checkpoint_needs_no_data(run_cli):
    ckpt = require(CHECKPOINTS / "checkpoint_trained_ch_regularized_dense.pth.tar")
    run = run_cli("classify", "-a", "resnet20_cifar", "--summary", "sparsity", "--resume-from", ckpt)
    assert run.code == 0, run.err
    assert run.out.strip().splitlines()[-1] == "Total sparsity: 8.88"
    assert (run.log_dir() / "sparsity.csv").exists()


def test_thinnify_channel_regularized_checkpoint_keeps_accuracy_and_cuts_macs(run_cli, tmp_path):
    """The original's channel-regularized dense ResNet-20: its zero channels go, top-1 stays 90.81,
    and the thinned model needs 26.6% fewer MACs (what the original reports for this recipe)."""
    ckpt = require(CHECKPOINTS / "checkpoint_trained_ch_regularized_dense.pth.tar")
    run = run_cli(
        "classify",
        "-a",
        "resnet20_cifar",
        "--thinnify",
        "--evaluate",
        "--resume-from",
        ckpt,
        "-j",
        "0",
        "-b",
        "500",
        require(CIFAR10_DIR),
    )
    assert run.code == 0, run.err
    assert abs(run.result()[0] - 90.81) <= 0.05
    thinned = run.saved("checkpoint_trained_ch_regularized_dense_thinned.pth.tar")
    assert thinned.parent == run.log_dir()
    summary = run_cli("classify", "-a", "resnet20_cifar", "--resume-from", thinned, "--summary", "compute")
    assert summary.code == 0, summary.err
    macs = int(summary.out.strip().splitlines()[-1].removeprefix("Total MACs: ").replace(",", ""))
    assert round(100 * (1 - macs / 40_813_184), 1) == 26.6
