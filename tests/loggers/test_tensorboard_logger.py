"""The TensorBoard logger: tags and steps of the original, read back from the event files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from distiller.errors import ConfigError  # noqa: E402
from distiller.loggers import TensorBoardLogger  # noqa: E402
from distiller.loggers import tensorboard_logger as tb_module  # noqa: E402

TRAIN = "Performance/Training/"


def _events(logdir):
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def _scalars(acc, tag):
    return [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars(tag)]


def test_progress_scalars_use_prefix_and_global_step(tmp_path):
    with TensorBoardLogger(tmp_path) as logger:
        logger.log_training_progress((TRAIN, {"Overall Loss": 0.5, "Top1": 70.0}), 0, 10, 20, 10)
        logger.log_training_progress((TRAIN, {"Overall Loss": 0.25, "Top1": 80.0}), 2, 5, 20, 10)
        logger.log_training_progress(("Performance/Validation/", {"Top1": torch.tensor(75.0)}), 2, 20, 20, 0)
    acc = _events(tmp_path)
    assert _scalars(acc, "Performance/Training/Overall Loss") == [(10, 0.5), (45, 0.25)]
    assert _scalars(acc, "Performance/Training/Top1") == [(10, 70.0), (45, 80.0)]
    assert _scalars(acc, "Performance/Validation/Top1") == [(60, 75.0)]


def test_weights_sparsity_tags(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 2, 3), nn.Flatten(), nn.Linear(2, 4))
    with torch.no_grad():
        model[0].weight[0, 0].zero_()  # one of four kernels: 2-D sparsity 25%
        model[2].weight[1].zero_()  # one of four rows
    with TensorBoardLogger(tmp_path) as logger:
        logger.log_weights_sparsity(model, 3)
    acc = _events(tmp_path)
    assert _scalars(acc, "sparsity/weights/0.weight") == [(3, 25.0)]
    assert _scalars(acc, "sparsity-2D/weights/0.weight") == [(3, 25.0)]
    assert _scalars(acc, "sparsity/weights/2.weight") == [(3, 25.0)]
    assert _scalars(acc, "sparsity-2D/weights/2.weight") == [(3, 25.0)]
    assert _scalars(acc, "sparsity/weights/total") == [(3, 100 * (9 + 2) / 44)]


def test_activation_statistics_are_logged_per_module(tmp_path):
    with TensorBoardLogger(tmp_path) as logger:
        logger.log_activation_statistic(
            "train", "sparsity", {"relu1": 0.25, "layer1.relu": torch.tensor([0.5, 1.0])}, 4
        )
    acc = _events(tmp_path)
    assert _scalars(acc, "sparsity/activations/train/relu1") == [(4, 0.25)]
    assert _scalars(acc, "sparsity/activations/train/layer1.relu") == [(4, 0.75)]


def test_weight_and_gradient_histograms(tmp_path):
    model = nn.Linear(3, 2)
    model(torch.randn(4, 3)).sum().backward()
    with TensorBoardLogger(tmp_path) as logger:
        logger.log_weights_distribution(None, 0)  # nothing, as in the original
        logger.log_weights_distribution(model.named_parameters(), 7)
    acc = _events(tmp_path)
    assert set(acc.Tags()["histograms"]) == {"weight", "weight/grad", "bias", "bias/grad"}
    [event] = acc.Histograms("weight")
    assert event.step == 7 and event.histogram_value.num == 6


def test_model_buffers_one_scalar_per_value(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].register_buffer("clip_val", torch.tensor([1.0, 2.0]))
    model[1].clip_val = nn.Parameter(torch.tensor(3.0))
    with TensorBoardLogger(tmp_path) as logger:
        logger.log_model_buffers(model, ["clip_val"], "clipping", 1, 2, 5, 1)
    acc = _events(tmp_path)
    assert _scalars(acc, "clipping/0/clip_val/0") == [(7, 1.0)]
    assert _scalars(acc, "clipping/0/clip_val/1") == [(7, 2.0)]
    assert _scalars(acc, "clipping/1/clip_val") == [(7, 3.0)]


def test_event_file_is_created_on_first_record_only(tmp_path):
    logger = TensorBoardLogger(tmp_path / "tb")
    logger.close()
    assert not (tmp_path / "tb").exists()
    logger.log_training_progress((TRAIN, {"Top1": 1.0}), 0, 1, 1, 1)
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    logger.close()


def test_missing_tensorboard_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tb_module, "tensorboard_available", lambda: False)
    with pytest.raises(ConfigError, match="pip install tensorboard.*--no-tensorboard"):
        TensorBoardLogger(tmp_path)
