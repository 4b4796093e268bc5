"""The console logger: the original's progress-line format and its tables, written at INFO."""

from __future__ import annotations

import logging
from collections import OrderedDict

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.loggers import DataLogger, NullLogger, PythonLogger, format_progress

TRAIN = "Performance/Training/"
VALID = "Performance/Validation/"


@pytest.fixture
def recorded(caplog):
    logger = logging.getLogger("distiller.tests.python_logger")
    caplog.set_level(logging.INFO, logger=logger.name)
    return PythonLogger(logger), caplog


def test_training_line_has_the_original_format():
    stats = OrderedDict([("Overall Loss", 0.123456789), ("Objective Loss", 0.1), ("Top1", 91.5), ("LR", 0.1)])
    line = format_progress((TRAIN, stats), 3, 7, 120)
    assert line == (
        "Epoch: [3][  7/120]    Overall Loss 0.123457    Objective Loss 0.100000    Top1 91.500000    LR 0.100000"
    )


def test_validation_and_test_lines_start_with_test():
    stats = {"Loss": 0.35, "Top1": 90.625, "Top5": 99.6875}
    assert (
        format_progress((VALID, stats), 2, 5, 10)
        == "Test: [ 5/10]    Loss 0.350000    Top1 90.625000    Top5 99.687500"
    )
    # A training record outside an epoch is a test line too (the original's epoch < 0 rule).
    assert format_progress((TRAIN, {"Top1": 1.0}), -1, 1, 1).startswith("Test: [1/1]")


def test_integers_keep_thousands_separators_and_tensors_become_numbers():
    line = format_progress((TRAIN, {"NNZ": 1234567, "Loss": torch.tensor(0.5)}), 0, 1, 1)
    assert line.endswith("NNZ 1,234,567    Loss 0.500000")


def test_malformed_record_is_a_config_error():
    with pytest.raises(ConfigError, match="prefix"):
        format_progress({"Top1": 1.0}, 0, 1, 1)
    with pytest.raises(ConfigError, match="str"):
        format_progress((TRAIN, {"Top1": "high"}), 0, 1, 1)


def test_progress_goes_to_the_given_logger_at_info(recorded):
    logger, caplog = recorded
    logger.log_training_progress((TRAIN, {"Top1": 50.0}), 0, 10, 10, 10)
    [record] = caplog.records
    assert record.levelno == logging.INFO and record.getMessage() == "Epoch: [0][10/10]    Top1 50.000000"


def test_weights_sparsity_is_the_summary_table(recorded):
    logger, caplog = recorded
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.zero_()
    logger.log_weights_sparsity(model, 0)
    text = caplog.records[-1].getMessage()
    assert text.startswith("Parameters:") and "0.weight" in text and "2.weight" in text
    assert text.splitlines()[-1] == f"Total sparsity: {100 * 18 / 22:.2f}"


def test_activation_statistic_table_reduces_tensors_by_mean(recorded):
    logger, caplog = recorded
    logger.log_activation_statistic("train", "sparsity", {"relu1": 0.25, "relu2": torch.tensor([0.5, 1.0])}, 1)
    text = caplog.records[-1].getMessage()
    assert "Activation sparsity (train, epoch 1)" in text
    assert "| relu1   |       0.25 |" in text and "| relu2   |       0.75 |" in text


def test_model_buffers_table(recorded):
    logger, caplog = recorded
    model = nn.Sequential(nn.Linear(2, 2))
    model[0].register_buffer("clip_val", torch.tensor([1.5, 2.5]))
    logger.log_model_buffers(model, ["clip_val"], "clip", 2, 3, 10, 1)
    text = caplog.records[-1].getMessage()
    assert text.startswith("clip: Epoch: [2][ 3/10]") and "1.5, 2.5" in text


def test_base_and_null_loggers_do_nothing():
    model = nn.Linear(2, 2)
    for logger in (DataLogger(), NullLogger()):
        with logger as entered:
            entered.log_training_progress((TRAIN, {"Top1": 1.0}), 0, 1, 1, 1)
            entered.log_activation_statistic("train", "sparsity", {"m": 1.0}, 0)
            entered.log_weights_sparsity(model, 0)
            entered.log_weights_distribution(model.named_parameters(), 0)
            entered.log_model_buffers(model, ["weight"], "w", 0, 1, 1, 1)
            entered.flush()
