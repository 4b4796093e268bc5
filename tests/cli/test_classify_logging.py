"""`distiller classify` data logging: TensorBoard tags, the CSV history, and the console report flags."""

from __future__ import annotations

import csv

import pytest

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-j", "0", "-b", "64", "--etrs", "0.3", "--deterministic")

L1_SCHEDULE = """\
version: 1
regularizers:
  l1:
    class: L1Regularizer
    reg_regims:
      conv2.weight: 0.0002
      fc.weight: 0.0002
policies:
  - regularizer: {instance_name: l1}
    starting_epoch: 0
    ending_epoch: 2
    frequency: 1
"""

EXPECTED_SCALARS = {
    "Performance/Training/Overall Loss",
    "Performance/Training/Objective Loss",
    "Performance/Training/L1Regularizer_loss",
    "Performance/Training/Top1",
    "Performance/Training/Top5",
    "Performance/Training/LR",
    "Performance/Validation/Loss",
    "Performance/Validation/Top1",
    "Performance/Validation/Top5",
    "sparsity/weights/conv1.weight",
    "sparsity/weights/conv2.weight",
    "sparsity/weights/fc.weight",
    "sparsity-2D/weights/conv2.weight",
    "sparsity/weights/total",
}


def _progress_rows(log_dir):
    with open(log_dir / "training_progress.csv", newline="") as f:
        return list(csv.reader(f))


def _last_top1_line(out: str) -> str:
    return [line for line in out.splitlines() if "Top1" in line][-1]


def test_training_writes_tensorboard_scalars_histograms_and_csv(run_cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    schedule = tmp_path / "l1.yaml"
    schedule.write_text(L1_SCHEDULE)
    run = run_cli(
        "classify",
        *DIGITS,
        "--epochs",
        "2",
        "--compress",
        schedule,
        "--param-hist",
        "--confusion",
        "--num-best-scores",
        "2",
    )
    assert run.code == 0, run.err
    log_dir = run.log_dir()

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    assert EXPECTED_SCALARS - set(events.Tags()["scalars"]) == set()
    rows = _progress_rows(log_dir)
    steps_per_epoch = int(rows[1][3])
    # One validation point per epoch, at the epoch's last training step (the training curve's axis).
    assert [e.step for e in events.Scalars("Performance/Validation/Top1")] == [steps_per_epoch, 2 * steps_per_epoch]
    assert {"conv1.weight", "fc.weight", "fc.weight/grad"} <= set(events.Tags()["histograms"])

    assert rows[0] == ["phase", "epoch", "completed", "total", "step", "metric", "value"]
    assert {r[0] for r in rows[1:]} == {"train", "valid", "test"}
    valid_top1 = [r for r in rows if r[0] == "valid" and r[5] == "Top1"]
    assert [r[1] for r in valid_top1] == ["0", "1"]
    test_top1 = float(next(r[6] for r in rows if r[0] == "test" and r[5] == "Top1"))
    assert run.result()[0] == pytest.approx(test_top1, abs=5e-4)
    assert (log_dir / "weights_sparsity.csv").exists()

    # Console: progress lines and per-epoch tables on stderr (DESIGN §7), results on stdout.
    assert "Epoch: [1][" in run.err and "L1Regularizer_loss" in run.err and "Parameters:" in run.err
    assert "Epoch: [1][" not in run.out
    assert _last_top1_line(run.out).startswith("==> Top1: ")
    assert run.out.strip().splitlines()[-1].startswith("==> Top1: ")
    # --confusion: the final test's matrix; --num-best-scores 2: two best lines after the last epoch.
    assert "true \\ predicted" in run.out
    last_epoch = run.out[run.out.index("Epoch 1:") : run.out.index("Saved: ")]
    assert last_epoch.count("==> Best [Top1:") == 2


def test_no_tensorboard_writes_no_event_file_and_masks_sparsity_each_epoch(run_cli):
    run = run_cli("classify", *DIGITS, "--epochs", "2", "--no-tensorboard", "--masks-sparsity")
    assert run.code == 0, run.err
    log_dir = run.log_dir()
    assert not list(log_dir.rglob("events.out.tfevents.*"))
    assert {r[0] for r in _progress_rows(log_dir)[1:]} == {"train", "valid", "test"}
    assert run.out.count("Masks sparsity:") == 2
    assert _last_top1_line(run.out).startswith("==> Top1: ")


def test_evaluate_logs_the_test_pass(run_cli, tmp_path):
    train = run_cli("classify", *DIGITS, "--epochs", "1", "--no-tensorboard", out_dir=tmp_path / "t")
    run = run_cli("classify", *DIGITS, "--evaluate", "--resume-from", train.log_dir() / "checkpoint.pth.tar")
    assert run.code == 0, run.err
    assert "Test: [" in run.err and _last_top1_line(run.out).startswith("==> Top1: ")
    rows = _progress_rows(run.log_dir())
    assert [r[:2] for r in rows[1:]] == [["test", "-1"]] * 3
    assert len(list(run.log_dir().glob("events.out.tfevents.*"))) == 1
