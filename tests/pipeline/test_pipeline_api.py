"""The pipeline's library side: settings and their errors, the QAT path, and the latency helpers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError, ScheduleError
from distiller.pipeline import PipelineConfig, default_schedule, measure_latency, run_pipeline, time_blocks


def test_defaults_resolve_per_dataset(tmp_path):
    digits = PipelineConfig().resolved()
    assert (digits.arch, digits.threads, digits.latency_batch) == ("convnet_digits", 1, 256)
    assert digits.schedule == str(default_schedule("digits")) and default_schedule("digits").is_file()
    cifar = PipelineConfig(dataset="cifar10", data_dir=str(tmp_path)).resolved()
    assert cifar.arch == "resnet20_cifar" and cifar.threads >= 1
    assert PipelineConfig(epochs=3, threads=2).resolved().epochs == 3


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"dataset": "mnist"}, ConfigError, "digits or cifar10"),
        ({"dataset": "cifar10"}, ConfigError, "--data-dir"),
        ({"prune_epochs": 2}, ScheduleError, "--prune-epochs 4"),
        ({"quantization": "int4"}, ConfigError, "auto, ptq, qat"),
        ({"schedule": "/no/such.yaml"}, ConfigError, "does not exist"),
        ({"epochs": 0}, ConfigError, "epochs must be a positive integer"),
        ({"arch": "no_such_model"}, ConfigError, "no_such_model"),
    ],
)
def test_bad_settings_fail_before_any_training(settings, error, message):
    with pytest.raises(error, match=message):
        PipelineConfig(**settings).resolved()


def test_cli_reports_bad_settings_without_a_traceback(run_cli, tmp_path):
    run = run_cli("pipeline", "--dataset", "cifar10", "-o", tmp_path)
    assert run.code == 2
    assert "distiller: error:" in run.err and "--data-dir PATH" in run.err and "Traceback" not in run.err
    assert not list(tmp_path.iterdir())  # no log dir for a run that cannot start


def test_auto_mode_tries_qat_and_keeps_the_better_int8_model(tmp_path):
    config = PipelineConfig(
        epochs=1, prune_epochs=4, finetune_epochs=1, qat_epochs=1, qat_threshold=-100.0, calibration_size=128,
        latency_batch=16, latency_rounds=1, latency_repeats=1, train_size=512, valid_size=100, test_size=100,
    )  # fmt: skip
    before = torch.get_num_threads()
    report = run_pipeline(config, tmp_path)
    assert torch.get_num_threads() == before  # the run's thread count is restored
    assert set(report.int8_valid_top1) == {"fp32", "ptq", "qat"}
    assert report.int8_method == max(("ptq", "qat"), key=lambda m: (report.int8_valid_top1[m], m == "ptq"))
    data = json.loads((tmp_path / "pipeline.json").read_text())
    assert data["int8_method"] == report.int8_method and data["test_images"] == 100
    assert set(data["stage_seconds"]) == {"dense", "prune", "thin", "fine-tune", "int8", "export", "measure"}


def test_time_blocks_runs_each_runner_in_its_own_block_per_round():
    calls = []
    runners = {name: (lambda n=name: calls.append(n)) for name in ("a", "b")}
    ms = time_blocks(runners, warmup=1, repeats=2, rounds=2, pause=0.0)
    assert set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3


def test_measure_latency_times_models_in_eval_mode_and_restores_threads():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    before = torch.get_num_threads()
    ms = measure_latency({"m": model}, torch.randn(8, 4), threads=1, warmup=0, repeats=2, rounds=1)
    assert ms["m"] > 0 and not model.training and torch.get_num_threads() == before
