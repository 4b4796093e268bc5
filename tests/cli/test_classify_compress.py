"""`distiller classify --compress`, knowledge distillation flags and `distiller validate`."""

from __future__ import annotations

import torch

from shared_data import MNIST_DIR, REPO_ROOT, require

SCHEDULES = REPO_ROOT / "tests" / "data_files"
DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-b", "64", "--lr", "0.1", "-j", "0", "--deterministic")


def _checkpoint(run):
    return torch.load(run.log_dir() / "checkpoint.pth.tar", weights_only=True)


def _sparsity(tensor):
    return 1.0 - torch.count_nonzero(tensor).item() / tensor.numel()


def test_schedule_prunes_and_is_stored_in_the_checkpoint(run_cli):
    schedule = SCHEDULES / "digits_agp_resume.yaml"
    run = run_cli("classify", *DIGITS, "--epochs", "4", "--compress", schedule)
    assert run.code == 0, run.err
    assert run.result()[0] > 85.0
    ckpt = _checkpoint(run)
    state = ckpt["state_dict"]
    assert abs(_sparsity(state["conv2.weight"]) - 0.60) < 0.01 and abs(_sparsity(state["fc.weight"]) - 0.60) < 0.01
    filters_alive = (state["conv1.weight"].flatten(1).abs().sum(1) > 0).sum().item()
    assert filters_alive == 16 - int(0.40 * 16)
    assert ckpt["extras"]["compress"]["yaml"] == schedule.read_text()
    assert (run.log_dir() / "configs" / schedule.name).exists()


def test_resumed_schedule_is_bit_equal(run_cli, tmp_path):
    schedule = SCHEDULES / "digits_agp_resume.yaml"
    full = run_cli("classify", *DIGITS, "--epochs", "4", "--compress", schedule, out_dir=tmp_path / "full")
    part = run_cli("classify", *DIGITS, "--epochs", "2", "--compress", schedule, out_dir=tmp_path / "part")
    assert full.code == 0 and part.code == 0, (full.err, part.err)
    # No --compress: the schedule stored in the checkpoint continues.
    resumed = run_cli(
        "classify",
        *DIGITS,
        "--epochs",
        "4",
        "--resume-from",
        part.log_dir() / "checkpoint.pth.tar",
        out_dir=tmp_path / "resumed",
    )
    assert resumed.code == 0, resumed.err
    assert "Continuing the compression schedule" in resumed.out
    expected, actual = _checkpoint(full), _checkpoint(resumed)
    for key, value in expected["state_dict"].items():
        assert torch.equal(value, actual["state_dict"][key]), key
    masks_expected = expected["compression_sched"]["masks_dict"]
    masks_actual = actual["compression_sched"]["masks_dict"]
    for key, mask in masks_expected.items():
        assert (mask is None and masks_actual[key] is None) or torch.equal(mask, masks_actual[key]), key
    assert (
        expected["optimizer_state_dict"]["param_groups"][0]["lr"]
        == actual["optimizer_state_dict"]["param_groups"][0]["lr"]
        == 0.1 * 0.5**2
    )


def test_bad_schedule_is_a_clear_error(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pruners:\n  p:\n    class: AutomatedGradualPrunr\n    initial_sparsity: 0.1\n")
    run = run_cli("classify", *DIGITS, "--epochs", "1", "--compress", bad)
    assert run.code == 2 and "AutomatedGradualPruner" in run.err and str(bad) in run.err
    assert "Traceback" not in run.err


def test_knowledge_distillation_flags(run_cli, tmp_path):
    teacher = run_cli("classify", *DIGITS, "--epochs", "3", out_dir=tmp_path / "teacher")
    assert teacher.code == 0, teacher.err
    student = run_cli(
        "classify",
        *DIGITS,
        "--epochs",
        "2",
        "--kd-teacher",
        "simplenet_digits",
        "--kd-resume",
        teacher.log_dir() / "checkpoint.pth.tar",
        "--kd-temp",
        "4",
        "--kd-dw",
        "0.7",
        "--kd-sw",
        "0.3",
        "--kd-tw",
        "0.1",
    )
    assert student.code == 0, student.err
    assert "Knowledge distillation from simplenet_digits" in student.out
    assert student.result()[0] > 80.0


def test_validate_prints_the_plan(run_cli):
    run = run_cli("validate", SCHEDULES / "digits_agp_resume.yaml", "-a", "simplenet_digits")
    assert run.code == 0, run.err
    assert "conv2.weight" in run.out and "is valid for simplenet_digits" in run.out
    bad = run_cli("validate", SCHEDULES / "digits_agp_resume.yaml", "-a", "simplenet_mnist")
    assert bad.code == 2 and "fc.weight" in bad.err


def _mnist_full_flow(run_cli, schedule: str):
    """The original's full-flow test 6: simplenet_mnist, 3 epochs (of 20,000 images each), with ``schedule``.

    The variant with thinning is case 5 of ``tests/full_flow`` (run by ``.ci/run``)."""
    return run_cli(
        "classify",
        "-a",
        "simplenet_mnist",
        "--epochs",
        "3",
        "--etrs",
        "20000",
        "--lr",
        "0.05",
        "--deterministic",
        "-j",
        "0",
        "--compress",
        SCHEDULES / schedule,
        require(MNIST_DIR),
    )


def test_full_flow_mnist_pruning(run_cli):
    """The original's full-flow test 6 without thinning: >= 97.5% with the sparsities met."""
    run = _mnist_full_flow(run_cli, "simplenet_mnist_pruning.yaml")
    assert run.code == 0, run.err
    assert run.result()[0] >= 97.5
    state = _checkpoint(run)["state_dict"]
    zero_filters = {
        name: int((state[name].flatten(1).abs().sum(1) == 0).sum()) for name in ("conv1.weight", "conv2.weight")
    }
    assert zero_filters == {"conv1.weight": 2, "conv2.weight": 10}  # 10% of 20 and 20% of 50 filters
    assert abs(_sparsity(state["fc2.weight"]) - 0.15) < 0.002


def test_activation_ranked_pruner_gets_statistics_from_the_app(run_cli):
    run = run_cli("classify", *DIGITS, "--epochs", "3", "--compress", SCHEDULES / "digits_network_trimming.yaml")
    assert run.code == 0, run.err
    assert "Activation statistics (apoz_channels) primed on 1024 training samples" in run.out
    state = _checkpoint(run)["state_dict"]
    for name, filters in (("conv1.weight", 16), ("conv2.weight", 32)):
        zero = int((state[name].flatten(1).abs().sum(1) == 0).sum())
        assert zero == int(0.4 * filters), name
