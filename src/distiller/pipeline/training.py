"""The training epochs of the pipeline's stages, on the app's loops (:mod:`distiller.apps.loops`).

One :class:`Trainer` holds the data and the seed of a run. Every stage trains with SGD (momentum 0.9)
through :func:`~distiller.apps.loops.train_one_epoch`, so a compression scheduler's hooks are called
exactly as ``distiller classify`` calls them. Epochs are numbered across the whole run for the data
order (each stage sees new shuffles), and from 0 within a stage for the scheduler (a schedule's
epochs count from the start of its stage).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from distiller.apps.data_loggers import PROGRESS_LOGGER
from distiller.apps.loops import EvalResult, evaluate, train_one_epoch
from distiller.apps.optimizers import build_optimizer
from distiller.data import DataLoaders
from distiller.determinism import derive_seed, seed_everything
from distiller.scheduler import CompressionScheduler

__all__ = ["Trainer", "progress_log"]

progress_log = logging.getLogger(PROGRESS_LOGGER + ".pipeline")
"""Per-epoch and per-stage progress: the CLI sends it to stderr (stdout carries the results)."""


@dataclass
class Trainer:
    """Trains and tests models of one run on its loaders.

    Attributes:
        loaders: train/validation/test loaders.
        seed: the run's seed; each epoch reseeds from it (reproducible stages).
        weight_decay: SGD weight decay.
        device: where training runs.
    """

    loaders: DataLoaders
    seed: int
    weight_decay: float = 5e-4
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    epochs_done: int = 0

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """SGD with momentum 0.9 over ``model``'s parameters."""
        return build_optimizer("sgd", model.parameters(), lr, 0.9, self.weight_decay)

    def train(
        self,
        model: nn.Module,
        epochs: int,
        optimizer: torch.optim.Optimizer,
        *,
        stage: str,
        scheduler: CompressionScheduler | None = None,
        cosine: bool = True,
    ) -> EvalResult | None:
        """Train ``epochs`` epochs; return the last validation result (``None`` for no epoch).

        Args:
            model: the model (trained in place).
            epochs: how many epochs.
            optimizer: its optimizer (the learning rate decays to 0 along a cosine with ``cosine``).
            stage: the stage's name, for the progress lines.
            scheduler: a compression scheduler whose hooks are called (epochs counted from 0).
            cosine: decay the learning rate along a cosine over the epochs (else keep it).
        """
        lr_decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs) if cosine and epochs else None
        valid = None
        for epoch in range(epochs):
            run_epoch = self.epochs_done
            seed_everything(derive_seed(self.seed, "pipeline", run_epoch))
            self.loaders.set_epoch(run_epoch)
            if scheduler is not None:
                scheduler.on_epoch_begin(epoch, optimizer)
            lr = optimizer.param_groups[0]["lr"]
            train = train_one_epoch(
                model, self.loaders.train, self.criterion, optimizer, scheduler, epoch, self.device, progress=False
            )
            valid = evaluate(model, self.loaders.valid, self.criterion, self.device, progress=False)
            if scheduler is not None:
                scheduler.on_epoch_end(epoch, optimizer, metrics={"min": valid.loss, "max": valid.top1})
            if lr_decay is not None:
                lr_decay.step()
            self.epochs_done += 1
            progress_log.info(
                "%s epoch %d/%d: lr %.4f, train loss %.4f, train top-1 %.2f | valid top-1 %.2f (%.1fs)",
                stage,
                epoch + 1,
                epochs,
                lr,
                train.losses["Overall Loss"],
                train.top1,
                valid.top1,
                train.seconds,
            )
        return valid

    def validate(self, model: nn.Module) -> EvalResult:
        """Top-1/top-5/loss of ``model`` on the validation loader (what the pipeline's choices read)."""
        return evaluate(model, self.loaders.valid, self.criterion, self.device, progress=False)

    def test(self, model: nn.Module) -> EvalResult:
        """Top-1/top-5/loss of ``model`` (PyTorch, or an ONNX Runtime model) on the test loader."""
        return evaluate(model, self.loaders.test, self.criterion, self.device, progress=False)
