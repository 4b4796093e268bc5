"""Knowledge distillation (Hinton et al. 2015) as a scheduled policy.

The student is trained on ``student_weight * CE(student, labels) + distill_weight * T^2 *
KL(softmax(teacher / T) || softmax(student / T))``, plus ``teacher_weight * CE(teacher, labels)``
when the teacher is trained alongside ("scheme A" of Mishra & Marr, Apprentice).

Differences from the original's ``KnowledgeDistillationPolicy``:

- The training loop needs no change: a forward hook on the student runs the teacher on the same
  inputs (the original required calling ``policy.forward(x)`` instead of ``model(x)``; that still
  works). The hook is active only while the policy is (between its ``on_epoch_begin`` and
  ``on_epoch_end``), in training mode with gradients enabled, so validation skips the teacher.
- The distillation term reaches the student's weights. The original detached the cached student
  logits (``out.new_tensor(out, requires_grad=True)``), so the term changed the loss value but no
  gradient. It also left out the ``T^2`` factor Hinton et al. use to keep the soft-target gradients
  on the scale of the hard-target ones; ``scale_by_t_squared=False`` restores the original's value.
- ``teacher_weight > 0`` works (the original raised ``NotImplementedError``): the teacher runs in
  training mode with gradients, the loop passes the labels (``before_backward_pass(...,
  targets=y)``), and the policy steps the teacher with an optimizer of the student's type and
  learning rate (or the ``teacher_optimizer`` given).
- KD is configurable in YAML (``distillation:`` section, class ``KnowledgeDistillation``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import nn

from distiller.errors import ConfigError
from distiller.registry import Registry
from distiller.scheduler.policies import LossComponent, PolicyLoss, ScheduledTrainingPolicy

__all__ = [
    "DISTILLERS",
    "DistillationLossWeights",
    "KnowledgeDistillation",
    "KnowledgeDistillationPolicy",
    "build_kd_policy",
    "create_teacher",
    "distillation_loss",
]

DISTILLERS: Registry[type] = Registry("distiller")
"""YAML ``class:`` name of the ``distillation:`` section -> class."""


class DistillationLossWeights(NamedTuple):
    """Weights of the three loss terms (the original's names)."""

    distill: float = 0.5
    student: float = 0.5
    teacher: float = 0.0


DEFAULT_LOSS_WEIGHTS = DistillationLossWeights()
"""The original's defaults: 0.5 distillation, 0.5 student-vs-labels, no teacher-vs-labels term."""


def _check_weight(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what} must be a finite number >= 0, got {value!r}. Fix: e.g. {what}: 0.5.")
    return float(value)


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, scale_by_t_squared: bool = True
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch.

    The teacher's probabilities are constants (detached): only the student learns from this term.
    """
    soft_log_probs = F.log_softmax(student_logits / temperature, dim=1)
    soft_targets = F.softmax(teacher_logits.detach() / temperature, dim=1)
    loss = F.kl_div(soft_log_probs, soft_targets, reduction="batchmean")
    return loss * temperature**2 if scale_by_t_squared else loss


class KnowledgeDistillationPolicy(ScheduledTrainingPolicy):
    """Distill ``teacher`` into ``student`` during the scheduled epochs.

    Args:
        student: the model being trained (the scheduler's model).
        teacher: the model whose soft targets the student learns.
        temperature: softmax temperature ``T`` (> 0).
        loss_weights: ``DistillationLossWeights(distill, student, teacher)``.
        scale_by_t_squared: multiply the distillation term by ``T^2`` (Hinton et al.); the
            original did not.
        teacher_optimizer: steps the teacher when ``loss_weights.teacher > 0``; by default one of
            the student optimizer's type and hyper-parameters, following its learning rate.

    Raises:
        ConfigError: non-positive temperature or negative weights.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        temperature: float = 1.0,
        loss_weights: DistillationLossWeights | tuple[float, float, float] = DEFAULT_LOSS_WEIGHTS,
        *,
        scale_by_t_squared: bool = True,
        teacher_optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        super().__init__()
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ConfigError(f"temperature must be a number > 0, got {temperature!r}. Fix: e.g. temperature: 4.0.")
        weights = DistillationLossWeights(*loss_weights)
        for term, value in zip(weights._fields, weights):
            _check_weight(value, f"{term} weight")
        self.student = student
        self.teacher = teacher
        self.temperature = float(temperature)
        self.loss_wts = weights
        self.scale_by_t_squared = scale_by_t_squared
        self.teacher_optimizer = teacher_optimizer
        self.active = False
        self.last_students_logits: torch.Tensor | None = None
        self.last_teacher_logits: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    @property
    def trains_teacher(self) -> bool:
        return self.loss_wts.teacher > 0

    # --- capturing logits ----------------------------------------------------------------------

    def _run_teacher(self, args: tuple, kwargs: dict) -> torch.Tensor:
        if self.trains_teacher:
            self.teacher.train()
            return self.teacher(*args, **kwargs)
        self.teacher.eval()
        with torch.no_grad():
            return self.teacher(*args, **kwargs)

    def _on_student_forward(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not (self.active and module.training and torch.is_grad_enabled()):
            return
        self.last_teacher_logits = self._run_teacher(args, kwargs)
        self.last_students_logits = output

    def forward(self, *inputs: Any) -> Any:
        """Run the student (and, when active, the teacher); the original's entry point."""
        return self.student(*inputs)

    __call__ = forward

    def _attach(self) -> None:
        if self._hook is None:
            self._hook = self.student.register_forward_hook(self._on_student_forward, with_kwargs=True)

    def _detach(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    # --- hooks ---------------------------------------------------------------------------------

    def on_epoch_begin(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        first = next(self.student.parameters(), None)
        teacher_first = next(self.teacher.parameters(), None)
        if first is not None and teacher_first is not None and teacher_first.device != first.device:
            self.teacher.to(first.device)
        self.active = True
        self._attach()

    def on_epoch_end(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        self.active = False
        self._detach()
        self.last_students_logits = self.last_teacher_logits = None

    def observe_targets(self, targets: torch.Tensor) -> None:
        self._targets = targets

    def before_backward_pass(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        loss: torch.Tensor,
        zeros_mask_dict: Any,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> PolicyLoss | None:
        if not self.active:
            return None
        if self.last_teacher_logits is None or self.last_students_logits is None:
            raise ConfigError(
                "Knowledge distillation saw no training forward pass of the student in this minibatch. "
                "Fix: call the model in train mode (model.train()) with gradients enabled between "
                "on_minibatch_begin and before_backward_pass."
            )
        distill = distillation_loss(
            self.last_students_logits, self.last_teacher_logits, self.temperature, self.scale_by_t_squared
        )
        overall = self.loss_wts.student * loss + self.loss_wts.distill * distill
        components = [LossComponent("Distill Loss", distill)]
        if self.trains_teacher:
            if self._targets is None:
                raise ConfigError(
                    "teacher_weight > 0 needs the labels of the minibatch. Fix: call "
                    "scheduler.before_backward_pass(..., targets=labels), or set teacher_weight to 0."
                )
            teacher_loss = F.cross_entropy(self.last_teacher_logits, self._targets)
            overall = overall + self.loss_wts.teacher * teacher_loss
            components.append(LossComponent("Teacher Loss", teacher_loss))
        self.last_students_logits = self.last_teacher_logits = None
        self._targets = None
        return PolicyLoss(overall, components)

    def before_parameter_optimization(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        zeros_mask_dict: Any,
        meta: dict[str, Any],
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        if not (self.active and self.trains_teacher):
            return
        if self.teacher_optimizer is None:
            if optimizer is None:
                raise ConfigError("Training the teacher (teacher_weight > 0) needs the optimizer in the hooks.")
            self.teacher_optimizer = type(optimizer)(self.teacher.parameters(), **optimizer.defaults)
        if optimizer is not None:
            for group in self.teacher_optimizer.param_groups:
                group["lr"] = optimizer.param_groups[0]["lr"]
        self.teacher_optimizer.step()
        self.teacher_optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        if self.trains_teacher:
            state: dict[str, Any] = {"teacher": self.teacher.state_dict()}
            if self.teacher_optimizer is not None:
                state["teacher_optimizer"] = self.teacher_optimizer.state_dict()
            return state
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "teacher" in state:
            self.teacher.load_state_dict(state["teacher"])
        if "teacher_optimizer" in state and self.teacher_optimizer is not None:
            self.teacher_optimizer.load_state_dict(state["teacher_optimizer"])


def create_teacher(
    arch: str,
    dataset: str | None = None,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build a teacher model from the zoo, optionally loading a checkpoint (``--kd-resume``).

    Raises:
        ConfigError, ModelError, CheckpointError: as :func:`distiller.models.create_model` and
            :func:`distiller.checkpoint.load_lean_checkpoint`.
    """
    from distiller.checkpoint import load_lean_checkpoint
    from distiller.models import create_model

    teacher = create_model(arch, dataset, pretrained=pretrained, device=device)
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise ConfigError(f"Teacher checkpoint {str(checkpoint)!r} does not exist. Fix: give the path of a file.")
        load_lean_checkpoint(checkpoint, teacher, device=device)
    return teacher.eval()


def build_kd_policy(
    student: nn.Module,
    teacher: nn.Module,
    temperature: float = 1.0,
    distill_wt: float = 0.5,
    student_wt: float = 0.5,
    teacher_wt: float = 0.0,
) -> KnowledgeDistillationPolicy:
    """The KD policy for the original's command-line flags (``--kd-temp``, ``--kd-dw``, ...).

    Schedule it with ``scheduler.add_policy(policy, starting_epoch=kd_start_epoch,
    ending_epoch=epochs, frequency=1)``, as the original's sample app did.
    """
    return KnowledgeDistillationPolicy(
        student, teacher, temperature, DistillationLossWeights(distill_wt, student_wt, teacher_wt)
    )


@DISTILLERS.register("KnowledgeDistillation")
class KnowledgeDistillation(KnowledgeDistillationPolicy):
    """The YAML form: a teacher from the model zoo plus the loss settings.

    Args:
        model: the student (supplied by the schedule loader).
        teacher_arch: the teacher's architecture name (``distiller list models``).
        teacher_checkpoint: a checkpoint with the teacher's trained weights.
        teacher_pretrained: use the zoo's pretrained weights instead.
        teacher_dataset: the teacher's dataset (default: the student's).
        temperature, distill_weight, student_weight, teacher_weight: see
            :class:`KnowledgeDistillationPolicy`.
        name: the instance name (supplied by the schedule loader).
    """

    def __init__(
        self,
        model: nn.Module,
        teacher_arch: str,
        teacher_checkpoint: str | None = None,
        teacher_pretrained: bool = False,
        teacher_dataset: str | None = None,
        temperature: float = 1.0,
        distill_weight: float = 0.5,
        student_weight: float = 0.5,
        teacher_weight: float = 0.0,
        name: str | None = None,
    ) -> None:
        if not isinstance(teacher_arch, str):
            raise ConfigError(f"teacher_arch must be a model name, got {teacher_arch!r}.")
        weights = DistillationLossWeights(
            _check_weight(distill_weight, "distill_weight"),
            _check_weight(student_weight, "student_weight"),
            _check_weight(teacher_weight, "teacher_weight"),
        )
        first = next(model.parameters(), None)
        device = first.device if first is not None else "cpu"
        dataset = teacher_dataset or getattr(model, "dataset", None)
        teacher = create_teacher(teacher_arch, dataset, bool(teacher_pretrained), teacher_checkpoint, device)
        super().__init__(model, teacher, temperature, weights)
        self.name = name
        self.teacher_arch = teacher_arch
