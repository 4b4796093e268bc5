"""The loops send progress records to data loggers; the app's logger set (create_loggers)."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from distiller.apps import data_loggers
from distiller.apps.analysis_options import AnalysisOptions
from distiller.apps.loops import evaluate, train_one_epoch
from distiller.apps.options import ClassifierOptions
from distiller.loggers import CsvLogger, DataLogger, PythonLogger, TensorBoardLogger
from distiller.regularization import L1Regularizer
from distiller.scheduler import CompressionScheduler
from distiller.scheduler.policies import RegularizationPolicy


class Recorder(DataLogger):
    def __init__(self):
        self.records = []

    def log_training_progress(self, stats_dict, epoch, completed, total, freq):
        self.records.append((stats_dict[0], dict(stats_dict[1]), epoch, completed, total, freq))


def _data(n=200, batch_size=32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=batch_size)


def test_training_logs_every_print_freq_and_the_last_step_with_loss_components():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = CompressionScheduler(model)
    scheduler.add_policy(RegularizationPolicy(L1Regularizer("l1", model, {"0.weight": 1e-3})), epochs=[2])
    recorder = Recorder()
    train_one_epoch(model, _data(), nn.CrossEntropyLoss(), optimizer, scheduler, 2, "cpu", 3, False, loggers=[recorder])
    assert [(r[3], r[4]) for r in recorder.records] == [(3, 7), (6, 7), (7, 7)]
    prefix, stats, epoch, _, _, freq = recorder.records[-1]
    assert prefix == "Performance/Training/" and epoch == 2 and freq == 3
    assert list(stats) == [
        "Overall Loss",
        "Objective Loss",
        "L1Regularizer_loss",
        "Top1",
        "Top5",
        "LR",
        "Time",
    ]
    assert stats["Overall Loss"] > stats["Objective Loss"] and stats["LR"] == 0.05


def test_evaluation_logs_with_the_phase_prefix_and_nothing_without_loggers():
    model = nn.Sequential(nn.Linear(4, 2))
    recorder = Recorder()
    result = evaluate(
        model, _data(), nn.CrossEntropyLoss(), "cpu", None, False, loggers=[recorder], print_freq=0, phase="test"
    )
    [(prefix, stats, epoch, completed, total, _)] = recorder.records  # print_freq 0: only the last step
    assert prefix == "Performance/Test/" and (epoch, completed, total) == (-1, 7, 7)
    assert stats == {"Loss": result.loss, "Top1": result.top1, "Top5": result.top5}
    evaluate(model, _data(), nn.CrossEntropyLoss(), progress=False)  # loggers=() still works


def test_create_loggers_console_csv_and_tensorboard(tmp_path):
    loggers = data_loggers.create_loggers(tmp_path, ClassifierOptions())
    assert [type(lg) for lg in loggers] == [PythonLogger, CsvLogger, TensorBoardLogger]
    assert data_loggers.console_loggers(loggers) == loggers[:1]
    assert data_loggers.file_loggers(loggers) == loggers[1:]
    off = data_loggers.create_loggers(tmp_path, ClassifierOptions(analysis=AnalysisOptions(tensorboard=False)))
    assert [type(lg) for lg in off] == [PythonLogger, CsvLogger]
    assert list(tmp_path.iterdir()) == []  # nothing is written before the first record


def test_missing_tensorboard_warns_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(data_loggers, "tensorboard_available", lambda: False)
    monkeypatch.setattr(data_loggers, "_warned_no_tensorboard", False)
    caplog.set_level(logging.WARNING, logger="distiller.apps.data_loggers")
    for _ in range(2):
        loggers = data_loggers.create_loggers(tmp_path, ClassifierOptions())
        assert [type(lg) for lg in loggers] == [PythonLogger, CsvLogger]
    assert [r.getMessage() for r in caplog.records if "tensorboard" in r.getMessage()] == [
        "TensorBoard logging is off: the 'tensorboard' package is not installed (pip install tensorboard). "
        "Pass --no-tensorboard to silence this warning."
    ]
