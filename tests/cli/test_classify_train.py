"""`distiller classify` end to end on the embedded digits data."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from shared_data import REPO_ROOT

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-b", "64", "--lr", "0.1", "-j", "0", "--deterministic")


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_training_reaches_accuracy_and_writes_run_dir(run_cli):
    run = run_cli("classify", *DIGITS, "--epochs", "8", "--name", "digits")
    assert run.code == 0, run.err
    top1, top5, loss = run.result()
    assert top1 >= 95.0 and top5 >= 99.0 and loss < 0.3
    log_dir = run.log_dir()
    assert log_dir.name.startswith("digits___")
    assert (log_dir.parent / "latest_log_dir").resolve() == log_dir.resolve()
    assert (log_dir / "digits_checkpoint.pth.tar").exists() and (log_dir / "digits_best.pth.tar").exists()
    assert f"Saved: {log_dir / 'digits_checkpoint.pth.tar'}" in run.out
    env = (log_dir / "environment.txt").read_text()
    assert "torch: " in env and "command line: distiller classify" in env
    assert "==> Best [Top1:" in run.out
    ckpt = torch.load(log_dir / "digits_checkpoint.pth.tar", weights_only=True)
    assert ckpt["arch"] == "simplenet_digits" and ckpt["dataset"] == "digits" and ckpt["epoch"] == 7
    assert ckpt["optimizer_type"] == "SGD" and "best_top1" in ckpt["extras"]


def test_resume_is_bit_equal_to_uninterrupted_run(run_cli, tmp_path):
    common = (*DIGITS, "--etrs", "0.5", "--seed", "3")
    full = run_cli("classify", *common, "--epochs", "4", out_dir=tmp_path / "full")
    assert full.code == 0, full.err
    part = run_cli("classify", *common, "--epochs", "2", out_dir=tmp_path / "part")
    assert part.code == 0, part.err
    resumed = run_cli("classify", *DIGITS, "--etrs", "0.5", "--epochs", "4",
                      "--resume-from", part.log_dir() / "checkpoint.pth.tar", out_dir=tmp_path / "resumed")
    assert resumed.code == 0, resumed.err
    expected = _weights(full.log_dir() / "checkpoint.pth.tar")
    actual = _weights(resumed.log_dir() / "checkpoint.pth.tar")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert full.result() == resumed.result()


def test_resume_from_the_latest_link_of_the_same_out_dir(run_cli, tmp_path):
    """The docs' `--resume-from logs/latest_log_dir/checkpoint.pth.tar` with `-o logs` again."""
    logs = tmp_path / "logs"
    train = run_cli("classify", *DIGITS, "--epochs", "1", "--etrs", "0.3", out_dir=logs)
    assert train.code == 0, train.err
    again = run_cli("classify", *DIGITS, "--evaluate", "--resume-from", logs / "latest_log_dir" / "checkpoint.pth.tar",
                    out_dir=logs)
    assert again.code == 0, again.err
    assert again.result() == train.result()
    assert (logs / "latest_log_dir").resolve() == again.log_dir().resolve()


def test_evaluate_resumed_checkpoint_and_confusion(run_cli, tmp_path):
    train = run_cli("classify", *DIGITS, "--epochs", "2", out_dir=tmp_path / "t")
    run = run_cli("classify", *DIGITS, "--evaluate", "--confusion",
                  "--resume-from", train.log_dir() / "checkpoint.pth.tar")
    assert run.code == 0, run.err
    assert run.result() == train.result()
    assert "true \\ predicted" in run.out


def test_reset_optimizer_and_exp_load_weights(run_cli, tmp_path):
    train = run_cli("classify", *DIGITS, "--epochs", "1", out_dir=tmp_path / "t")
    ckpt = train.log_dir() / "checkpoint.pth.tar"
    again = run_cli("classify", *DIGITS, "--epochs", "1", "--reset-optimizer", "--resume-from", ckpt)
    assert again.code == 0 and "Epoch 0:" in again.out
    lean = run_cli("classify", *DIGITS, "--evaluate", "--exp-load-weights-from", ckpt)
    assert lean.result() == train.result()
    done = run_cli("classify", *DIGITS, "--epochs", "1", "--resume-from", ckpt)
    assert done.code == 2 and "Nothing to train" in done.err


def test_save_untrained_model(run_cli):
    run = run_cli("classify", *DIGITS, "--epochs", "1", "--save-untrained-model", "--etrs", "64")
    assert run.code == 0
    assert (run.log_dir() / "untrained_checkpoint.pth.tar").exists()


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_other_optimizers(run_cli, optimizer):
    run = run_cli("classify", *DIGITS, "--epochs", "2", "--optimizer", optimizer, "--lr", "0.003")
    assert run.code == 0, run.err
    assert run.result()[0] > 80.0


def test_fake_dataset_runs_any_arch(run_cli):
    run = run_cli("classify", "-a", "simplenet_cifar", "--dataset", "fake", "--epochs", "1", "-j", "0", "-b", "32")
    assert run.code == 0, run.err
    assert run.result()[0] >= 0.0


def test_compress_classifier_script_runs_the_same_code(tmp_path):
    script = REPO_ROOT / "examples" / "classifier_compression" / "compress_classifier.py"
    proc = subprocess.run(
        [sys.executable, str(script), *DIGITS, "--epochs", "1", "--etrs", "128", "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Log dir: " in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("==> Top1: ")
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True).stdout
    for flag in ("--resume-from", "--exp-load-weights-from", "--effective-train-size", "--vs", "--det"):
        assert flag in help_text


def test_version_and_list(run_cli):
    run = run_cli("list", "models", "--dataset", "cifar10")
    assert "resnet20_cifar" in run.out.split() and "resnet18" not in run.out.split()
    datasets = run_cli("list", "datasets").out.split()
    assert {"cifar10", "mnist", "fashionmnist", "imagenet", "digits", "fake"} <= set(datasets)


def test_masks_sparsity_table_each_epoch(run_cli):
    run = run_cli("classify", *DIGITS, "--epochs", "1", "--etrs", "64", "--masks-sparsity")
    assert run.code == 0, run.err
    assert "Masks sparsity:" in run.out and "Total sparsity: 0.00" in run.out
