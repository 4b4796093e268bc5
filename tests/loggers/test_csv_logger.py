"""The CSV logger: long-format files, appended and flushed record by record."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.loggers import CsvLogger

TRAIN = "Performance/Training/"
VALID = "Performance/Validation/"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_training_progress_is_long_format_and_readable_before_close(tmp_path):
    logger = CsvLogger(logdir=tmp_path)
    logger.log_training_progress((TRAIN, {"Overall Loss": 0.5, "Top1": torch.tensor(75.0)}), 1, 10, 20, 10)
    logger.log_training_progress((VALID, {"Top1": 80.0}), 1, 20, 20, 0)
    logger.log_training_progress(("Performance/Test/", {"Top1": 79.0}), -1, 0, 0, 0)
    rows = _rows(tmp_path / "training_progress.csv")  # not closed: a crashed run keeps these rows
    assert rows == [
        ["phase", "epoch", "completed", "total", "step", "metric", "value"],
        ["train", "1", "10", "20", "30", "Overall Loss", "0.5"],
        ["train", "1", "10", "20", "30", "Top1", "75.0"],
        ["valid", "1", "20", "20", "40", "Top1", "80.0"],
        ["test", "-1", "0", "0", "0", "Top1", "79.0"],
    ]
    logger.close()
    logger.close()  # idempotent


def test_reopening_appends_without_a_second_header(tmp_path):
    first = CsvLogger(logdir=tmp_path)
    first.log_training_progress((TRAIN, {"Top1": 1.0}), 0, 1, 1, 1)
    first.close()
    first.log_training_progress((TRAIN, {"Top1": 2.0}), 1, 1, 1, 1)  # used after close: reopens
    first.close()
    with CsvLogger(logdir=tmp_path) as second:  # a resumed run in the same folder
        second.log_training_progress((TRAIN, {"Top1": 3.0}), 2, 1, 1, 1)
    rows = _rows(tmp_path / "training_progress.csv")
    assert [r[-1] for r in rows] == ["value", "1.0", "2.0", "3.0"]


def test_custom_prefix_gives_a_readable_phase_and_file_prefix(tmp_path):
    with CsvLogger("run7", tmp_path / "sub") as logger:
        logger.log_training_progress(("Performance/Calibration/", {"Loss": 1.0}), 0, 1, 2, 1)
    rows = _rows(tmp_path / "sub" / "run7_training_progress.csv")
    assert rows[1][:5] == ["calibration", "0", "1", "2", "1"]


def test_weights_sparsity_rows_per_parameter_and_total(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 4))
    with torch.no_grad():
        model[0].weight[0].zero_()
    with CsvLogger(logdir=tmp_path) as logger:
        logger.log_weights_sparsity(model, 0)
        logger.log_weights_sparsity(model, 1)
    rows = _rows(tmp_path / "weights_sparsity.csv")
    assert rows[0] == ["epoch", "parameter", "shape", "numel", "nnz", "sparsity"]
    assert rows[1] == ["0", "0.weight", "2x1x3x3", "18", "9", "50.0"]
    assert rows[2][:5] == ["0", "2.weight", "4x2", "8", "8"]
    assert rows[3][:5] == ["0", "total", "-", "26", "17"] and float(rows[3][5]) == pytest.approx(100 * 9 / 26)
    assert [r[0] for r in rows[4:]] == ["1", "1", "1"]


def test_activation_statistics_scalar_and_per_channel(tmp_path):
    with CsvLogger(logdir=tmp_path) as logger:
        logger.log_activation_statistic("valid", "sparsity", {"relu1": 0.25, "relu2": torch.tensor([0.5, 1.0])}, 3)
    rows = _rows(tmp_path / "activation_statistics.csv")
    assert rows == [
        ["phase", "epoch", "statistic", "module", "value"],
        ["valid", "3", "sparsity", "relu1", "0.25"],
        ["valid", "3", "sparsity", "relu2", "0.75"],
    ]


def test_model_buffers_one_file_per_buffer(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].register_buffer("clip_val", torch.tensor([1.0, 2.0]))
    model[1].register_buffer("clip_val", torch.tensor(3.0))
    with CsvLogger(logdir=tmp_path) as logger:
        logger.log_model_buffers(model, ["clip_val", "absent"], "clip", 1, 2, 5, 1)
    rows = _rows(tmp_path / "clip_val.csv")
    assert rows == [
        ["epoch", "completed", "total", "step", "module", "index", "value"],
        ["1", "2", "5", "7", "0", "0", "1.0"],
        ["1", "2", "5", "7", "0", "1", "2.0"],
        ["1", "2", "5", "7", "1", "0", "3.0"],
    ]
    assert not (tmp_path / "absent.csv").exists()


def test_unloggable_values_are_config_errors(tmp_path):
    with CsvLogger(logdir=tmp_path) as logger:
        with pytest.raises(ConfigError, match="number or a tensor"):
            logger.log_activation_statistic("train", "records", {"conv1": {"min": 0.0}}, 0)
        with pytest.raises(ConfigError, match="empty"):
            logger.log_training_progress((TRAIN, {"Top1": torch.tensor([])}), 0, 1, 1, 1)


def test_unwritable_folder_is_a_config_error(tmp_path):
    logger = CsvLogger(logdir=tmp_path)
    (tmp_path / "training_progress.csv").mkdir()  # a folder where the file should be
    with pytest.raises(ConfigError, match="training_progress.csv"):
        logger.log_training_progress((TRAIN, {"Top1": 1.0}), 0, 1, 1, 1)
