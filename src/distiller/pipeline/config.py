"""What a pipeline run does: :class:`PipelineConfig`, with defaults per dataset.

The defaults of the embedded digits are sized for ``make demo`` (a few minutes on two CPU cores);
those of CIFAR-10 (``resnet20_cifar``) are a starting point for a machine with time. Every field that
is left ``None`` takes its dataset's default (:data:`DATASET_DEFAULTS`) in :meth:`PipelineConfig.resolved`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from distiller.errors import ConfigError, ScheduleError
from distiller.pipeline.latency import cpu_cores

__all__ = ["DATASET_DEFAULTS", "QUANTIZATION_MODES", "PipelineConfig", "default_schedule"]

QUANTIZATION_MODES = ("auto", "ptq", "qat")
"""``ptq``: post-training quantization; ``qat``: also quantization-aware training, keeping the better
of the two; ``auto``: QAT only where PTQ loses more than ``qat_threshold`` points of top-1."""

DATASET_DEFAULTS: dict[str, dict[str, object]] = {
    "digits": {
        "arch": "convnet_digits",
        "epochs": 30,
        "prune_epochs": 6,
        "finetune_epochs": 20,
        "qat_epochs": 4,
        "lr": 0.02,
        "finetune_lr": 0.02,
        "batch_size": 64,
        "calibration_size": 1000,
        "threads": 1,
    },
    "cifar10": {
        "arch": "resnet20_cifar",
        "epochs": 60,
        "prune_epochs": 10,
        "finetune_epochs": 30,
        "qat_epochs": 3,
        "lr": 0.1,
        "finetune_lr": 0.01,
        "batch_size": 128,
        "calibration_size": 1000,
        "threads": 0,
    },
}
"""Per-dataset defaults of the fields left ``None`` (``threads`` 0: every core this process may use)."""


def default_schedule(dataset: str) -> Path:
    """The structured AGP schedule shipped for ``dataset`` (``distiller/pipeline/schedules/``)."""
    return Path(str(resources.files("distiller.pipeline").joinpath("schedules", f"{dataset}.agp.yaml")))


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of :func:`~distiller.pipeline.run_pipeline`; ``None`` means the dataset's default.

    Attributes:
        dataset: ``digits`` (embedded) or ``cifar10`` (needs ``data_dir``).
        data_dir: the dataset folder.
        arch: the model (a zoo name).
        schedule: the pruning stage's compression schedule (YAML); default: the shipped structured AGP.
        epochs: dense training epochs.
        prune_epochs: epochs of the pruning stage (at least the schedule's pruning window).
        finetune_epochs: epochs of fine-tuning after thinning.
        qat_epochs: epochs of quantization-aware training (``qat``/``auto``).
        lr: learning rate of dense training and pruning (SGD, momentum 0.9, cosine decay when dense).
        finetune_lr: starting learning rate of fine-tuning and QAT (cosine decay).
        batch_size: training batch size.
        weight_decay: SGD weight decay.
        quantization: one of :data:`QUANTIZATION_MODES`.
        qat_threshold: points of top-1 that PTQ may lose before ``auto`` tries QAT.
        calibration_size: training images (count, or fraction <= 1) that calibrate int8 ranges.
        latency_batch: batch size of the latency measurements.
        threads: intra-op threads of PyTorch (training and timing) and ONNX Runtime. One for digits: its
            small model trains fastest on one thread, and timings stay comparable on a shared machine,
            where thread pools of several threads spin and slow each other down. All cores for CIFAR-10.
        latency_rounds, latency_repeats, latency_warmup: see :func:`~distiller.pipeline.latency.time_blocks`.
        seed: seed of initialization, data order and subsets.
        validation_split: share of the training split held out for validation.
        train_size, valid_size, test_size: count or fraction of training samples per epoch, of
            validation and of test samples (small values make quick checks).
        workers: data-loading worker processes.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    arch: str | None = None
    schedule: str | None = None
    epochs: int | None = None
    prune_epochs: int | None = None
    finetune_epochs: int | None = None
    qat_epochs: int | None = None
    lr: float | None = None
    finetune_lr: float | None = None
    batch_size: int | None = None
    weight_decay: float = 5e-4
    quantization: str = "auto"
    qat_threshold: float = 0.5
    calibration_size: float | None = None
    latency_batch: int = 256
    threads: int | None = None
    latency_rounds: int = 5
    latency_repeats: int = 10
    latency_warmup: int = 3
    seed: int = 0
    validation_split: float = 0.1
    train_size: float = 1.0
    valid_size: float = 1.0
    test_size: float = 1.0
    workers: int = 0

    def resolved(self) -> PipelineConfig:
        """A copy with the dataset's defaults filled in, checked.

        Raises:
            ConfigError: an unknown dataset, a missing ``data_dir``, or a value out of range.
        """
        if self.dataset not in DATASET_DEFAULTS:
            raise ConfigError(
                f"The pipeline runs on {' or '.join(DATASET_DEFAULTS)}, not {self.dataset!r}. "
                "Fix: --dataset digits (embedded, no folder) or --dataset cifar10 --data-dir PATH."
            )
        if self.dataset != "digits" and not self.data_dir:
            raise ConfigError(
                f"--dataset {self.dataset} needs the dataset folder: --data-dir PATH "
                f"(make demo DATA={self.dataset} DATA_DIR=PATH)."
            )
        defaults = DATASET_DEFAULTS[self.dataset]
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.schedule is None:
            filled["schedule"] = str(default_schedule(self.dataset))
        if filled.get("threads") == 0:
            filled["threads"] = cpu_cores()
        config = dataclasses.replace(self, **filled)
        config._check()
        config._check_schedule()
        return config

    def _check(self) -> None:
        positive = ("epochs", "batch_size", "latency_batch", "threads", "latency_rounds", "latency_repeats")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("prune_epochs", "finetune_epochs", "qat_epochs", "latency_warmup", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}.")
        for name in ("lr", "finetune_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}.")
        if self.quantization not in QUANTIZATION_MODES:
            modes = ", ".join(QUANTIZATION_MODES)
            raise ConfigError(f"quantization must be one of {modes}, got {self.quantization!r}.")
        if self.quantization == "qat" and self.qat_epochs < 1:
            raise ConfigError("quantization 'qat' needs qat_epochs >= 1.")
        if not Path(self.schedule).is_file():
            raise ConfigError(f"Schedule file {self.schedule} does not exist.")

    def _check_schedule(self) -> None:
        """The schedule builds against the architecture and fits in the pruning stage (before any training)."""
        from distiller.config import validate_schedule
        from distiller.models import create_model

        plan = validate_schedule(self.schedule, create_model(self.arch, self.dataset))
        if plan.last_epoch() > self.prune_epochs:
            raise ScheduleError(
                f"{self.schedule} fires until epoch {plan.last_epoch() - 1}, but the pruning stage has "
                f"{self.prune_epochs} epochs. Fix: --prune-epochs {plan.last_epoch()} or more, or shorten the schedule."
            )
