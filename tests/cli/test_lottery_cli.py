"""`distiller lottery ticket` and `distiller lottery imp` end to end, and retraining tickets with `classify`."""

from __future__ import annotations

import contextlib
import csv
import io

import pytest
import torch

from shared_data import MNIST_DIR, REPO_ROOT, require

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-b", "64", "-j", "0", "--deterministic", "--seed", "5")
SCHEDULE = REPO_ROOT / "tests" / "data_files" / "digits_agp_resume.yaml"


def _load(path):
    return torch.load(path, weights_only=True)


def _masks(ckpt):
    return {k: m for k, m in ckpt["compression_sched"]["masks_dict"].items() if m is not None}


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """A `classify` run that saved its initialization and pruned with an AGP schedule (3 epochs), shared."""
    from distiller.cli.main import main

    out_dir = tmp_path_factory.mktemp("train")
    argv = ["classify", *DIGITS, "--epochs", "3", "--compress", str(SCHEDULE), "--save-untrained-model",
            "--name", "agp", "-o", str(out_dir)]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(argv) == 0, out.getvalue()
    log_dir = (out_dir / "latest_log_dir").resolve()
    return log_dir / "agp_checkpoint.pth.tar", log_dir / "agp_untrained_checkpoint.pth.tar"


def test_ticket_holds_the_initialization_under_the_trained_masks_and_retrains_with_them_fixed(
    run_cli, tmp_path, pruned_run
):
    trained_path, init_path = pruned_run
    out = tmp_path / "tickets" / "ticket.pth.tar"
    run = run_cli("lottery", "ticket", "--trained", trained_path, "--init", init_path, "-o", out)
    assert run.code == 0, run.err
    assert f"Saved: {out}" in run.out
    trained, init, ticket = _load(trained_path), _load(init_path), _load(out)
    masks = _masks(trained)
    assert set(masks) == {"conv1.weight", "conv2.weight", "fc.weight"}
    pruned = sum(int((m == 0).sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert f"Ticket sparsity: {100 * pruned / total:.2f} ({pruned:,} of {total:,}" in run.out
    assert ticket["arch"] == "simplenet_digits" and ticket["epoch"] == -1
    assert ticket["optimizer_state_dict"] is None
    for name, value in ticket["state_dict"].items():
        mask = masks.get(name)
        if mask is None:
            assert torch.equal(value, init["state_dict"][name]), name
            continue
        assert torch.equal(_masks(ticket)[name], mask), name
        assert torch.equal(value[mask != 0], init["state_dict"][name][mask != 0]), name
        assert torch.count_nonzero(value[mask == 0]) == 0, name

    retrain = run_cli("classify", *DIGITS, "--epochs", "2", "--resume-from", out, "--reset-optimizer",
                      out_dir=tmp_path / "retrain")
    assert retrain.code == 0, retrain.err
    assert "Epoch 0:" in retrain.out and retrain.result()[0] > 50.0
    after = _load(retrain.log_dir() / "checkpoint.pth.tar")
    for name, mask in masks.items():
        weight = after["state_dict"][name]
        assert torch.count_nonzero(weight[mask == 0]) == 0, name  # masked weights stay exactly zero
        assert not torch.equal(weight[mask != 0], ticket["state_dict"][name][mask != 0]), name  # others trained
        assert torch.equal(_masks(after)[name], mask)


def test_ticket_without_output_path_goes_to_a_new_log_dir(run_cli, tmp_path, pruned_run):
    trained_path, init_path = pruned_run
    run = run_cli("lottery", "ticket", "--trained", trained_path, "--init", init_path, "--out-dir", tmp_path / "logs")
    assert run.code == 0, run.err
    log_dir = run.log_dir()
    assert log_dir.parent == tmp_path / "logs" and log_dir.name.startswith("lottery_ticket___")
    assert (log_dir / "agp_checkpoint_ticket.pth.tar").is_file()
    assert f"Saved: {log_dir / 'agp_checkpoint_ticket.pth.tar'}" in run.out


def test_imp_two_rounds_writes_csv_checkpoints_and_result_line(run_cli, tmp_path):
    run = run_cli("lottery", "imp", *DIGITS, "--rounds", "2", "--prune-fraction", "0.5", "--epochs-per-round", "2",
                  "--etrs", "0.5", "--out-dir", tmp_path / "imp")
    assert run.code == 0, run.err
    log_dir = run.log_dir()
    assert log_dir.name.startswith("lottery___")
    rows = list(csv.DictReader((log_dir / "lottery.csv").open()))
    assert [r["round"] for r in rows] == ["0", "1", "2"]
    assert [float(r["sparsity"]) for r in rows] == pytest.approx([0.0, 50.0, 75.0], abs=0.01)
    top1, top5, loss = run.result()
    assert (top1, top5) == (float(rows[-1]["top1"]), float(rows[-1]["top5"])) and top1 > 80.0
    assert run.out.strip().splitlines()[-1].startswith("==> Top1:")
    for name in ("init", "round0_trained", "round1_ticket", "round1_trained", "round2_ticket", "round2_trained"):
        assert f"Saved: {log_dir / (name + '.pth.tar')}" in run.out
    assert f"Saved: {log_dir / 'lottery.csv'}" in run.out
    assert "Ticket sparsity: 75.00" in run.out

    # The IMP round is exactly `classify --resume-from TICKET --reset-optimizer` with the same flags.
    ticket = log_dir / "round1_ticket.pth.tar"
    retrain = run_cli("classify", *DIGITS, "--etrs", "0.5", "--epochs", "2", "--resume-from", ticket,
                      "--reset-optimizer", out_dir=tmp_path / "retrain")
    assert retrain.code == 0, retrain.err
    expected = _load(log_dir / "round1_trained.pth.tar")["state_dict"]
    actual = _load(retrain.log_dir() / "checkpoint.pth.tar")["state_dict"]
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert retrain.result()[0] == pytest.approx(float(rows[1]["top1"]))


def test_late_rewinding_ticket_command_reproduces_the_imp_ticket(run_cli, tmp_path):
    run = run_cli("lottery", "imp", *DIGITS, "--rounds", "1", "--prune-fraction", "0.3", "--epochs-per-round", "3",
                  "--rewind-epoch", "1", "--etrs", "0.5", "--out-dir", tmp_path / "imp")
    assert run.code == 0, run.err
    log_dir = run.log_dir()
    assert _load(log_dir / "rewind.pth.tar")["epoch"] == 0
    out = tmp_path / "late.pth.tar"
    ticket = run_cli("lottery", "ticket", "--trained", log_dir / "round1_trained.pth.tar",
                     "--init", log_dir / "init.pth.tar", "--rewind", log_dir / "rewind.pth.tar", "-o", out)
    assert ticket.code == 0, ticket.err
    assert "weights of epoch 0" in ticket.out
    made, imp_ticket = _load(out), _load(log_dir / "round1_ticket.pth.tar")
    assert made["epoch"] == imp_ticket["epoch"] == 0
    assert all(torch.equal(made["state_dict"][k], v) for k, v in imp_ticket["state_dict"].items())
    assert all(torch.equal(_masks(made)[k], m) for k, m in _masks(imp_ticket).items())
    # A plain --resume-from continues the dense run's schedule at epoch 1 (the rewind point).
    retrain = run_cli("classify", *DIGITS, "--etrs", "0.5", "--epochs", "3", "--resume-from", out,
                      out_dir=tmp_path / "retrain")
    assert retrain.code == 0, retrain.err
    assert "Epoch 1:" in retrain.out and "Epoch 0:" not in retrain.out
    expected = _load(log_dir / "round1_trained.pth.tar")["state_dict"]
    actual = _load(retrain.log_dir() / "checkpoint.pth.tar")["state_dict"]
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


def test_ticket_errors_are_one_line_messages(run_cli, tmp_path, pruned_run):
    trained_path, init_path = pruned_run
    from distiller.checkpoint import save_checkpoint
    from distiller.models import create_model

    other = save_checkpoint(tmp_path / "other", model=create_model("simplenet_v2_mnist", "mnist"),
                            arch="simplenet_v2_mnist", dataset="mnist", epoch=0)[0]
    run = run_cli("lottery", "ticket", "--trained", trained_path, "--init", other, "-o", tmp_path / "t.pth.tar")
    assert run.code == 2 and "Traceback" not in run.err
    assert "different archs" in run.err and str(other) in run.err and str(trained_path) in run.err
    assert not (tmp_path / "t.pth.tar").exists()

    run = run_cli("lottery", "ticket", "--trained", trained_path, "-o", tmp_path / "t.pth.tar")
    assert run.code == 2 and "--init UNTRAINED.pth.tar" in run.err

    run = run_cli("lottery", "ticket", "--trained", trained_path, "--init", init_path, "-o", tmp_path)
    assert run.code == 2 and "is a folder" in run.err

    run = run_cli("lottery", "imp", *DIGITS, "--rounds", "2", "--prune-fraction", "1.5", "--epochs-per-round", "1",
                  "--out-dir", tmp_path / "bad")
    assert run.code == 2 and "--prune-fraction" in run.err and not (tmp_path / "bad").exists()


@pytest.mark.slow
@pytest.mark.realdata
def test_mnist_ticket_at_80_percent_sparsity_matches_the_dense_network(run_cli, tmp_path):
    """Acceptance: 3 rounds of IMP (P = 0.42 → 80.5% sparse) on MNIST; the ticket is within 1 point of dense."""
    data = require(MNIST_DIR)
    run = run_cli("lottery", "imp", "-a", "simplenet_mnist", "--dataset", "mnist", str(data), "-j", "0",
                  "-b", "128", "--lr", "0.05", "--rounds", "3", "--prune-fraction", "0.42", "--epochs-per-round", "2",
                  "--etrs", "0.25", "--vs", "0.05", "--evs", "2000", "--deterministic", "--seed", "1",
                  "--out-dir", tmp_path / "imp")
    assert run.code == 0, run.err
    rows = list(csv.DictReader((run.log_dir() / "lottery.csv").open()))
    dense, final = float(rows[0]["top1"]), float(rows[-1]["top1"])
    assert float(rows[-1]["sparsity"]) >= 80.0
    assert final >= dense - 1.0
    assert dense >= 97.0
