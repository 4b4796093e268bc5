"""`distiller classify --act-stats`: activation statistics per phase, saved and logged (the original's
activation sparsity was never actually logged; here it reaches TensorBoard and the CSV)."""

from __future__ import annotations

import pandas as pd

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-j", "0", "-b", "64", "--etrs", "0.3", "--deterministic")


def test_act_stats_saves_files_and_logs_activation_sparsity(run_cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = run_cli("classify", *DIGITS, "--epochs", "2", "--act-stats", "train", "test")
    assert run.code == 0, run.err
    log_dir = run.log_dir()

    for phase in ("train", "test"):
        sparsity = pd.read_csv(log_dir / f"{phase}_sparsity_ofm.csv")
        assert len(sparsity) == 2  # relu1, relu2
        values = sparsity.select_dtypes("number").to_numpy()
        assert ((values >= 0) & (values <= 100)).all()
        assert (log_dir / f"{phase}_apoz_channels.xlsx").exists()
        assert f"Saved: {log_dir / f'{phase}_sparsity_ofm.csv'}" in run.out
    assert not (log_dir / "valid_sparsity_ofm.csv").exists()  # not asked for

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"sparsity_ofm/activations/train/relu1", "sparsity_ofm/activations/train/relu2"} <= tags
    assert "sparsity_ofm/activations/test/relu1" in tags
    train_relu1 = events.Scalars("sparsity_ofm/activations/train/relu1")
    assert [e.step for e in train_relu1] == [0, 1]  # one point per epoch
    assert all(0.0 <= e.value <= 100.0 for e in train_relu1)

    logged = pd.read_csv(log_dir / "activation_statistics.csv")
    assert set(logged["phase"]) == {"train", "test"}
    assert run.out.strip().splitlines()[-1].startswith("==> Top1: ")
