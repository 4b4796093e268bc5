"""The float stages of the pipeline: dense training, structured pruning, thinning, fine-tuning.

Each stage is a function of a :class:`RunContext` (the run's settings, folder, data and saved files)
that uses the library as a user would: :func:`~distiller.models.create_model`, a YAML schedule built
by :func:`~distiller.config.build_schedule` with its scheduler's hooks in the training loop,
:func:`~distiller.thinning.thin_model` on the scheduler's masks, and checkpoints and ONNX files
written by :mod:`distiller.checkpoint` and :mod:`distiller.export`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from distiller.checkpoint import build_checkpoint
from distiller.checkpoint.save import atomic_save
from distiller.config import build_schedule, load_yaml_file
from distiller.export import export_img_classifier_to_onnx
from distiller.models import create_model
from distiller.pipeline.config import PipelineConfig
from distiller.pipeline.training import Trainer
from distiller.scheduler import CompressionScheduler
from distiller.summary import sparsity_summary
from distiller.thinning import thin_model

__all__ = ["PruneResult", "RunContext", "ThinResult", "finetune", "prune", "save_onnx", "thin", "train_dense"]


@dataclass
class RunContext:
    """What every stage shares: settings, the run folder, the trainer, an input batch, saved files."""

    config: PipelineConfig
    run_dir: Path
    trainer: Trainer
    example: torch.Tensor
    saved: list[Path] = field(default_factory=list)

    def save_checkpoint(self, model: nn.Module, name: str, **kwargs: object) -> Path:
        """``<run dir>/<name>.pth.tar``: the model with its thinning plans (and ``kwargs`` of
        :func:`~distiller.checkpoint.build_checkpoint`)."""
        checkpoint = build_checkpoint(
            model=model, arch=self.config.arch, dataset=self.config.dataset, epoch=self.trainer.epochs_done, **kwargs
        )
        path = self.run_dir / f"{name}.pth.tar"
        atomic_save(checkpoint, path)
        self.saved.append(path)
        return path


def save_onnx(ctx: RunContext, model: nn.Module, name: str) -> Path:
    """``<run dir>/<name>.onnx``: the float model, logits out (no softmax), dynamic batch."""
    path = export_img_classifier_to_onnx(
        model, ctx.run_dir / f"{name}.onnx", example_input=ctx.example[:1], add_softmax=False
    )
    ctx.saved.append(path)
    return path


def train_dense(ctx: RunContext) -> nn.Module:
    """Train the architecture from scratch (cosine learning rate); save ``dense.pth.tar``."""
    c = ctx.config
    model = create_model(c.arch, c.dataset, device=ctx.trainer.device)
    ctx.trainer.train(model, c.epochs, ctx.trainer.optimizer(model, c.lr), stage="dense")
    ctx.save_checkpoint(model, "dense")
    return model


@dataclass
class PruneResult:
    """The masked model, its scheduler (which holds the masks) and its sparsity table."""

    model: nn.Module
    scheduler: CompressionScheduler
    sparsity: pd.DataFrame


def prune(ctx: RunContext, dense: nn.Module) -> PruneResult:
    """Train a copy of ``dense`` under the structured schedule (constant learning rate ``finetune_lr``).

    The schedule's epochs count from the start of the stage (the configuration checked that the stage
    covers them).
    """
    c = ctx.config
    model = copy.deepcopy(dense)
    optimizer = ctx.trainer.optimizer(model, c.finetune_lr)
    plan = build_schedule(model, optimizer, load_yaml_file(c.schedule))
    ctx.trainer.train(model, c.prune_epochs, optimizer, stage="prune", scheduler=plan.scheduler, cosine=False)
    plan.scheduler.apply_mask()
    return PruneResult(model, plan.scheduler, sparsity_summary(model))


@dataclass
class ThinResult:
    """What thinning removed, and how the thinned model agrees with the masked one on the test set."""

    removed_channels: int
    groups: int
    masked_top1: float
    thinned_top1: float
    agreement: float
    max_abs_diff: float


@torch.no_grad()
def _test_outputs(ctx: RunContext, model: nn.Module) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x.to(ctx.trainer.device)).cpu() for x, _ in ctx.trainer.loaders.test])


def thin(ctx: RunContext, pruned: PruneResult) -> ThinResult:
    """Remove the masked filters (and the channels that read them) from ``pruned.model`` in place.

    The masked and the thinned model are compared on the test set: folding the constant output of a
    removed filter into a zero-padded convolution is exact only away from the feature-map borders
    (see :mod:`distiller.thinning.from_masks`), so the two agree closely rather than bit for bit.
    """
    model = pruned.model
    before = _test_outputs(ctx, model)
    masked = ctx.trainer.test(model).top1
    report = thin_model(model, pruned.scheduler.masks, example=ctx.example[:1])
    after = _test_outputs(ctx, model)
    thinned = ctx.trainer.test(model).top1
    agreement = float((before.argmax(1) == after.argmax(1)).float().mean())
    return ThinResult(
        report.num_removed, len(report.removed), masked, thinned, agreement, float((before - after).abs().max())
    )


def finetune(ctx: RunContext, model: nn.Module) -> nn.Module:
    """Fine-tune the thinned model (cosine from ``finetune_lr``); save ``thinned.pth.tar``.

    The checkpoint records the thinning plan: loading it into a dense model of the architecture
    rebuilds the thinned shapes.
    """
    c = ctx.config
    ctx.trainer.train(model, c.finetune_epochs, ctx.trainer.optimizer(model, c.finetune_lr), stage="fine-tune")
    ctx.save_checkpoint(model, "thinned")
    return model
