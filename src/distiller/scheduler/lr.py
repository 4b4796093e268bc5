"""Learning-rate schedulers usable from a schedule, and how an LR policy steps them.

``LR_SCHEDULERS`` holds every public class of :mod:`torch.optim.lr_scheduler` (found by
introspection, so a new PyTorch release adds its schedulers without a code change) plus the two
of the original Distiller:

- :class:`PolynomialLR` — ``base_lr * (1 - epoch / T_max) ** power``. PyTorch later added its own
  ``PolynomialLR(optimizer, total_iters, power)``; a schedule saying ``class: PolynomialLR`` means
  the original's, so ours takes the original's ``T_max`` and also PyTorch's ``total_iters``.
- :class:`MultiStepMultiGammaLR` — like ``MultiStepLR`` but with one gamma per milestone.
"""

from __future__ import annotations

import bisect
import inspect
import warnings
from collections.abc import Sequence
from typing import Any

from torch.optim import Optimizer
from torch.optim import lr_scheduler as torch_lr

from distiller.errors import ConfigError
from distiller.registry import Registry

__all__ = [
    "LR_SCHEDULERS",
    "LRArgumentError",
    "MultiStepMultiGammaLR",
    "PolynomialLR",
    "build_lr_scheduler",
    "step_lr_scheduler",
]

LR_SCHEDULERS: Registry[type] = Registry("lr_scheduler")


class LRArgumentError(ConfigError, ValueError):
    """Bad LR-scheduler arguments: a :class:`ConfigError` that is also the ``ValueError`` the
    original raised (its tests and users' ``except ValueError`` keep working)."""


class PolynomialLR(torch_lr.LRScheduler):
    """The original Distiller's polynomial decay: ``lr = base_lr * (1 - epoch / T_max) ** power``.

    Past ``T_max`` the original's formula went negative (or complex for a fractional power); here
    the factor stops at 0.

    Args:
        optimizer: wrapped optimizer.
        T_max: the epoch at which the LR reaches 0 (the original's name).
        power: the degree of the polynomial.
        total_iters: PyTorch's name for ``T_max``, so both spellings of ``PolynomialLR`` work.
        last_epoch: index of the last epoch (-1 to start fresh).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        T_max: int | None = None,  # noqa: N803 - the original's argument name
        power: float = 1.0,
        total_iters: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        if T_max is None and total_iters is None:
            raise LRArgumentError(
                "PolynomialLR needs T_max (the epoch at which the LR reaches 0). Fix: add 'T_max: N'."
            )
        if T_max is not None and total_iters is not None and T_max != total_iters:
            raise LRArgumentError("PolynomialLR got both T_max and total_iters. Fix: give only T_max.")
        t_max = T_max if T_max is not None else total_iters
        if isinstance(t_max, bool) or not isinstance(t_max, (int, float)) or t_max <= 0:
            raise LRArgumentError(f"PolynomialLR T_max must be a positive number, got {t_max!r}.")
        self.T_max = t_max
        self.power = power
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        factor = max(0.0, 1.0 - self.last_epoch / self.T_max) ** self.power
        return [base_lr * factor for base_lr in self.base_lrs]


class MultiStepMultiGammaLR(torch_lr.LRScheduler):
    """Multiply the LR by ``gammas[i]`` when the epoch reaches ``milestones[i]`` (cumulatively).

    Example: milestones ``[30, 60, 80]``, gammas ``[0.1, 0.1, 0.2]`` give the factors
    ``[1, 0.1, 0.01, 0.002]`` from epochs 0, 30, 60 and 80 on.

    Raises:
        LRArgumentError: unsorted milestones, or milestones and gammas of different lengths.
    """

    def __init__(
        self, optimizer: Optimizer, milestones: Sequence[int], gammas: Sequence[float], last_epoch: int = -1
    ) -> None:
        milestones = list(milestones)
        gammas = list(gammas)
        if milestones != sorted(milestones):
            raise LRArgumentError(f"MultiStepMultiGammaLR milestones must be increasing, got {milestones}.")
        if len(milestones) != len(gammas):
            raise LRArgumentError(
                f"MultiStepMultiGammaLR needs one gamma per milestone: {len(milestones)} milestones, "
                f"{len(gammas)} gammas."
            )
        self.milestones = milestones
        self.multiplicative_gammas: list[float] = [1]
        for gamma in gammas:
            self.multiplicative_gammas.append(self.multiplicative_gammas[-1] * gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        idx = bisect.bisect_right(self.milestones, self.last_epoch)
        return [base_lr * self.multiplicative_gammas[idx] for base_lr in self.base_lrs]


def _discover_torch_schedulers() -> dict[str, type]:
    """Every public scheduler class of ``torch.optim.lr_scheduler`` (not the abstract bases)."""
    found: dict[str, type] = {}
    for name, obj in vars(torch_lr).items():
        if name.startswith("_") or not inspect.isclass(obj) or obj.__module__ != torch_lr.__name__:
            continue
        if obj is torch_lr.LRScheduler or not (
            issubclass(obj, torch_lr.LRScheduler) or issubclass(obj, torch_lr.ReduceLROnPlateau)
        ):
            continue
        found[name] = obj
    return found


for _name, _cls in _discover_torch_schedulers().items():
    if _name != "PolynomialLR":  # the original's wins (it also accepts PyTorch's total_iters)
        LR_SCHEDULERS.register(_name, _cls)
LR_SCHEDULERS.register("PolynomialLR", PolynomialLR)
LR_SCHEDULERS.register("MultiStepMultiGammaLR", MultiStepMultiGammaLR)


def build_lr_scheduler(cls: type, optimizer: Optimizer, last_epoch: int = -1, **kwargs: Any) -> Any:
    """Instantiate ``cls`` for ``optimizer``, resuming at ``last_epoch`` when it is not -1.

    PyTorch requires ``initial_lr`` in every param group to resume a scheduler; an optimizer
    restored from a checkpoint of a run that used an LR scheduler has it. Otherwise the current LR
    is taken as the initial one (the scheduler's own state, restored afterwards by
    :meth:`CompressionScheduler.load_state_dict`, then makes the LR exact).
    """
    params = inspect.signature(cls).parameters
    if last_epoch != -1:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    if "last_epoch" in params:
        kwargs["last_epoch"] = last_epoch
    return cls(optimizer, **kwargs)


def _step_accepts_epoch(scheduler: Any) -> bool:
    try:
        return "epoch" in inspect.signature(scheduler.step).parameters
    except (TypeError, ValueError):
        return False


def step_lr_scheduler(scheduler: Any, index: int, metrics: dict[str, float] | None = None) -> None:
    """Step ``scheduler`` to epoch (or step) ``index``, the way the original's ``LRPolicy`` did.

    The original called ``step(epoch=current + 1)``, which sets the LR from the closed-form
    expression of that epoch (so a window starting late jumps to the LR of that epoch, and a
    resumed run needs no replay). PyTorch deprecated the ``epoch`` argument but keeps its meaning;
    we call it with that deprecation warning silenced. Schedulers whose ``step`` takes no epoch
    (``SequentialLR``, ``ChainedScheduler``) are stepped once. ``ReduceLROnPlateau`` gets the
    metric named by its ``mode`` (``metrics['min']`` = validation loss, ``metrics['max']`` = top-1).

    Raises:
        ConfigError: ``ReduceLROnPlateau`` without the metric it needs.
    """
    if isinstance(scheduler, torch_lr.ReduceLROnPlateau):
        if not metrics or scheduler.mode not in metrics:
            raise ConfigError(
                f"ReduceLROnPlateau (mode {scheduler.mode!r}) needs the validation metric "
                f"metrics[{scheduler.mode!r}]. Fix: call scheduler.on_epoch_end(epoch, optimizer, "
                "metrics={'min': val_loss, 'max': top1}), or use an epoch window for this policy."
            )
        scheduler.step(metrics[scheduler.mode])
        return
    if not _step_accepts_epoch(scheduler):
        scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*epoch.*", category=UserWarning)
        # The closed form makes the order of optimizer.step() and this call irrelevant.
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        scheduler.step(index)


def is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch_lr.ReduceLROnPlateau)


def current_lrs(optimizer: Optimizer) -> list[float]:
    """The LR of every param group (for logs and plans)."""
    return [float(g["lr"]) for g in optimizer.param_groups]
