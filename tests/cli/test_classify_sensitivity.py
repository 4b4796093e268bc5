"""``distiller classify --sense`` and ``distiller sensitivity-schedule`` end to end (digits; CIFAR-10 real data)."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml

from distiller.models import create_model
from shared_data import CHECKPOINTS, CIFAR10_DIR, require

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-j", "0")
HEADER = ["parameter", "sparsity", "top1", "top5", "loss"]


def read_rows(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of simplenet_digits after two epochs, shared by this module's tests (a random
    model's sensitivities are flat)."""
    from distiller.cli.main import main

    out = tmp_path_factory.mktemp("train")
    code = main(["classify", *DIGITS, "-b", "64", "--lr", "0.1", "--deterministic", "--epochs", "2", "-o", str(out)])
    assert code == 0
    return out / "latest_log_dir" / "checkpoint.pth.tar"


def test_element_sensitivity_then_schedule_then_training(run_cli, trained, tmp_path):
    run = run_cli("classify", *DIGITS, "--resume-from", trained, "--sense", "element",
                  "--sense-range", "0", "0.6", "0.2")
    assert run.code == 0, run.err
    top1, top5, loss = run.result()
    csv_path, png_path = run.saved("sensitivity.csv"), run.saved("sensitivity.png")
    assert csv_path.parent == png_path.parent == run.log_dir()
    assert png_path.read_bytes()[:4] == b"\x89PNG"
    rows = read_rows(csv_path)
    assert rows[0] == HEADER
    assert [(r[0], r[1]) for r in rows[1:]] == [
        (p, s) for p in ("conv1.weight", "conv2.weight", "fc.weight") for s in ("0.0", "0.2", "0.4")
    ]
    for row in rows[1:]:
        if row[1] == "0.0":  # every sparsity-0 row is the dense model, the printed result line
            assert (round(float(row[2]), 3), round(float(row[3]), 3), round(float(row[4]), 3)) == (top1, top5, loss)
    assert top1 > 80.0

    schedule = tmp_path / "agp.yaml"
    gen = run_cli("sensitivity-schedule", csv_path, "-a", "simplenet_digits", "--max-loss", "100", "-o", schedule,
                  "--end-epoch", "2", "--frequency", "1")
    assert gen.code == 0, gen.err
    assert f"Saved: {schedule}" in gen.out and "| conv2.weight" in gen.out
    spec = yaml.safe_load(schedule.read_text())
    assert spec["pruners"] == {
        "agp_0_4": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.05, "final_sparsity": 0.4,
                    "weights": ["conv1.weight", "conv2.weight", "fc.weight"]}
    }
    assert run_cli("validate", schedule, "-a", "simplenet_digits").code == 0

    fine_tune = run_cli("classify", *DIGITS, "-b", "64", "--lr", "0.05", "--epochs", "2", "--resume-from", trained,
                        "--reset-optimizer", "--compress", schedule, out_dir=tmp_path / "ft")
    assert fine_tune.code == 0, fine_tune.err
    weights = torch.load(fine_tune.log_dir() / "checkpoint.pth.tar", weights_only=True)["state_dict"]
    for name in ("conv1.weight", "conv2.weight", "fc.weight"):
        assert float((weights[name] == 0).float().mean()) == pytest.approx(0.4, abs=0.01), name


def test_filter_group_sensitivity_and_coupled_schedule(run_cli, trained, tmp_path):
    run = run_cli("classify", *DIGITS, "--resume-from", trained, "--sense", "filter", "--sense-groups",
                  "--sense-range", "0", "0.5", "0.25", "--vs", "0")
    assert run.code == 0, run.err
    rows = read_rows(run.saved("sensitivity.csv"))
    assert [(r[0], r[1]) for r in rows[1:]] == [
        (g, s) for g in ("group0:conv1.weight", "group1:conv2.weight") for s in ("0.0", "0.25")
    ]
    assert "Test: 360 samples" in run.out  # --vs 0: the test set
    schedule = tmp_path / "filters.yaml"
    gen = run_cli("sensitivity-schedule", run.saved("sensitivity.csv"), "-a", "simplenet_digits", "--sense", "filter",
                  "--max-loss", "100", "-o", schedule)
    assert gen.code == 0, gen.err
    pruners = yaml.safe_load(schedule.read_text())["pruners"]
    assert pruners["group_filters_0_25"]["group_dependency"] == "Coupled"
    assert pruners["group_filters_0_25"]["weights"] == ["conv1.weight", "conv2.weight"]


def test_errors_are_one_line_messages(run_cli, tmp_path):
    run = run_cli("classify", *DIGITS, "--sense", "element", "--sense-groups")
    assert run.code == 2 and "--sense-groups" in run.err and "--sense filter" in run.err
    run = run_cli("classify", *DIGITS, "--sense", "element", "--sense-range", "0.5", "0.1", "0.1")
    assert run.code == 2 and "gives no levels" in run.err

    bad = tmp_path / "bad.csv"
    bad.write_text("parameter,sparsity,top1,top5,loss\nconv1.weight,0.0,90,99,0.3\nlayer9.weight,0.0,90,99,0.3\n")
    run = run_cli("sensitivity-schedule", bad, "-a", "simplenet_digits", "--max-loss", "1", "-o", tmp_path / "s.yaml")
    assert run.code == 2
    assert str(bad) in run.err and "'layer9.weight' is not a parameter of simplenet_digits" in run.err
    assert not (tmp_path / "s.yaml").exists()
    bad.write_text("name,level\n")
    run = run_cli("sensitivity-schedule", bad, "-a", "simplenet_digits", "--max-loss", "1", "-o", tmp_path / "s.yaml")
    assert run.code == 2 and "header must be 'parameter,sparsity,top1,top5,loss'" in run.err


@pytest.mark.realdata
def test_resnet20_filter_sensitivity_on_cifar10(run_cli):
    ckpt = require(CHECKPOINTS / "checkpoint_trained_dense.pth.tar")
    data = require(CIFAR10_DIR)
    run = run_cli("classify", "-a", "resnet20_cifar", "--resume-from", ckpt, "--sense", "filter",
                  "--sense-range", "0", "0.10", "0.05", "--vs", "0", "--etes", "200", "-j", "0", data)
    assert run.code == 0, run.err
    top1, _, _ = run.result()
    rows = read_rows(run.saved("sensitivity.csv"))
    assert rows[0] == HEADER
    params = list(dict.fromkeys(r[0] for r in rows[1:]))
    convs = [n for n, p in create_model("resnet20_cifar", "cifar10").named_parameters() if p.dim() == 4]
    assert params == convs and len(convs) == 21  # stem, 18 block convs, 2 downsample convs
    assert len(rows) - 1 == 2 * len(params)
    assert all(round(float(r[2]), 3) == top1 for r in rows[1:] if r[1] == "0.0")
    assert any(float(r[2]) < top1 for r in rows[1:] if r[1] == "0.05")  # pruning 5% of some layer's filters hurts
    assert run.saved("sensitivity.png").stat().st_size > 10_000
