"""Iterative magnitude pruning (IMP) with rewinding: how lottery tickets are found.

One run (Frankle & Carbin, 2019; late rewinding: Frankle et al., 2019)::

    round 0   initialize, keep the weights W0 (or, rewinding to epoch k, the weights Wk after k epochs),
              train the dense network for E epochs
    round r   prune p of the weights still alive (by trained magnitude), set the others back to W0 / Wk,
              retrain with the masks fixed (epochs k .. E-1, the rest of the dense run's schedule)

After ``R`` rounds a fraction ``1 - (1 - p)^R`` of the conv/linear weights is pruned. The training is
the app's own :func:`~distiller.apps.loops.train_one_epoch` and :func:`~distiller.apps.loops.evaluate`
with a :class:`~distiller.scheduler.CompressionScheduler` that holds the masks and re-applies them after
every optimizer step: there is no second training loop. Each epoch reseeds from ``(seed, epoch)`` in
deterministic mode exactly as ``distiller classify`` does, so retraining a saved ticket with
``distiller classify --resume-from TICKET --reset-optimizer --deterministic --seed S`` replays the round.

Saving files and printing are left to the caller (callbacks), so the loop itself is usable from
notebooks and other apps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from distiller.apps.loops import EvalResult, TrainResult, evaluate, train_one_epoch
from distiller.data import DataLoaders
from distiller.determinism import derive_seed, seed_everything
from distiller.errors import ConfigError
from distiller.lottery.pruning import STRATEGIES, masks_sparsity, prunable_weights, prune_round_masks
from distiller.lottery.ticket import make_ticket, state_of
from distiller.scheduler import CompressionScheduler

__all__ = ["IMPConfig", "IMPResult", "RoundRecord", "Snapshot", "TrainingSetup", "run_imp"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IMPConfig:
    """What an IMP run does.

    Attributes:
        rounds: pruning rounds after the dense round 0.
        prune_fraction: share of the alive conv/linear weights pruned each round.
        epochs_per_round: training epochs of the dense round (retraining rounds run epochs
            ``rewind_epoch .. epochs_per_round - 1``).
        rewind_epoch: 0 rewinds to the initialization; k > 0 to the weights after k epochs.
        strategy: ``"global"`` or ``"layerwise"`` magnitude ranking (:mod:`distiller.lottery.pruning`).
        last_layer_rate: the output layer is pruned at this multiple of ``prune_fraction``.
    """

    rounds: int
    prune_fraction: float = 0.2
    epochs_per_round: int = 10
    rewind_epoch: int = 0
    strategy: str = "global"
    last_layer_rate: float = 1.0

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(isinstance(self.rounds, int) and self.rounds >= 1, f"--rounds must be at least 1, got {self.rounds!r}.")
        need(
            0.0 < float(self.prune_fraction) < 1.0,
            "--prune-fraction is the share of the remaining weights pruned per round, in (0, 1); "
            f"got {self.prune_fraction!r} (0.2 prunes 20% each round).",
        )
        need(
            isinstance(self.epochs_per_round, int) and self.epochs_per_round >= 1,
            f"--epochs-per-round must be at least 1, got {self.epochs_per_round!r}.",
        )
        need(
            isinstance(self.rewind_epoch, int) and 0 <= self.rewind_epoch < self.epochs_per_round,
            f"--rewind-epoch must be in [0, --epochs-per-round) = [0, {self.epochs_per_round}), got "
            f"{self.rewind_epoch!r}: retraining runs the epochs after the rewind point.",
        )
        need(self.strategy in STRATEGIES, f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}.")
        rate = float(self.last_layer_rate)
        need(
            rate >= 0.0 and rate * self.prune_fraction < 1.0,
            f"--last-layer-rate must be >= 0 and keep the output layer's rate below 1, got {self.last_layer_rate!r}.",
        )

    def expected_sparsity(self, round_index: int) -> float:
        """Percent of the weights pruned after ``round_index`` rounds (at the same rate for every layer)."""
        return 100.0 * (1.0 - (1.0 - self.prune_fraction) ** round_index)


@dataclass
class TrainingSetup:
    """The pieces of training an IMP run reuses every round (built by the app from its options)."""

    model: nn.Module
    loaders: DataLoaders
    criterion: nn.Module
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    deterministic: bool = False
    print_freq: int = 10
    progress: bool = True


@dataclass
class EpochRecord:
    """One epoch of one round."""

    round: int
    epoch: int
    train: TrainResult
    valid: EvalResult


@dataclass
class RoundRecord:
    """A round's outcome: sparsity (percent of the conv/linear weights) and test result after training."""

    round: int
    sparsity: float
    test: EvalResult
    epochs: list[EpochRecord] = field(default_factory=list)

    def csv_row(self) -> dict[str, str]:
        return {
            "round": str(self.round),
            "sparsity": f"{self.sparsity:.2f}",
            "top1": f"{self.test.top1:.3f}",
            "top5": f"{self.test.top5:.3f}",
            "loss": f"{self.test.loss:.4f}",
        }


@dataclass
class Snapshot:
    """A state worth saving, handed to the caller's ``on_snapshot``.

    ``kind`` is ``"init"`` (round 0's initialization), ``"rewind"`` (the weights after
    ``rewind_epoch`` epochs), ``"ticket"`` (a round's rewound, masked weights before retraining) or
    ``"trained"`` (after a round's training; ``test`` holds its result). ``epoch`` is the last
    completed epoch the weights correspond to (-1: none).
    """

    kind: str
    round: int
    epoch: int
    model: nn.Module
    scheduler: CompressionScheduler
    sparsity: float
    test: EvalResult | None = None


@dataclass
class IMPResult:
    """All rounds (round 0 is dense) and the final masks."""

    rounds: list[RoundRecord]
    masks: dict[str, torch.Tensor]

    @property
    def final(self) -> RoundRecord:
        return self.rounds[-1]


def _train_epochs(
    setup: TrainingSetup,
    scheduler: CompressionScheduler,
    optimizer: torch.optim.Optimizer,
    round_index: int,
    epochs: range,
    after_epoch: Callable[[int], None] | None = None,
) -> list[EpochRecord]:
    """The epochs of one round, in the order ``distiller classify`` runs them (so the two agree bit for bit)."""
    records = []
    for epoch in epochs:
        if setup.deterministic:
            seed_everything(derive_seed(setup.seed, "epoch", epoch))
        setup.loaders.set_epoch(epoch)
        scheduler.on_epoch_begin(epoch, optimizer)
        train = train_one_epoch(
            setup.model,
            setup.loaders.train,
            setup.criterion,
            optimizer,
            scheduler,
            epoch,
            setup.device,
            setup.print_freq,
            setup.progress,
        )
        valid = evaluate(setup.model, setup.loaders.valid, setup.criterion, setup.device, None, setup.progress, "valid")
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": valid.loss, "max": valid.top1})
        log.info(
            "Round %d, epoch %d: train loss %.4f, train top-1 %.3f | valid top-1 %.3f, loss %.4f (%.1fs)",
            round_index,
            epoch,
            train.losses["Overall Loss"],
            train.top1,
            valid.top1,
            valid.loss,
            train.seconds,
        )
        records.append(EpochRecord(round_index, epoch, train, valid))
        if after_epoch is not None:
            after_epoch(epoch)
    return records


def _test(setup: TrainingSetup) -> EvalResult:
    return evaluate(setup.model, setup.loaders.test, setup.criterion, setup.device, None, setup.progress, "test")


def run_imp(
    setup: TrainingSetup,
    config: IMPConfig,
    *,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> IMPResult:
    """Run round 0 (dense) and ``config.rounds`` prune–rewind–retrain rounds on ``setup.model``.

    Args:
        setup: model (freshly initialized: its current weights are the initialization), data,
            loss, optimizer factory (a fresh optimizer each round, as in the paper) and device.
        config: rounds, rate, epochs, rewind point, strategy.
        on_snapshot: called with each state worth saving (initialization, rewind point, tickets,
            trained models).
        on_round: called after each round with its record (e.g. to rewrite a CSV as the run goes).

    Returns:
        The rounds' records and the final masks; ``setup.model`` holds the last round's trained weights.

    Raises:
        ConfigError: the model has no conv/linear layer to prune.
    """
    model = setup.model
    prunable_weights(model)  # fails early on a model with nothing to prune
    notify = on_snapshot or (lambda snapshot: None)
    record = on_round or (lambda rec: None)
    k, end = config.rewind_epoch, config.epochs_per_round
    scheduler = CompressionScheduler(model, device=setup.device)
    rewind: dict[str, dict[str, torch.Tensor]] = {}

    def keep_rewind_point(epoch: int) -> None:
        if epoch == k - 1:
            rewind["state"] = {n: t.clone() for n, t in state_of(model).items()}
            notify(Snapshot("rewind", 0, epoch, model, scheduler, 0.0))

    notify(Snapshot("init", 0, -1, model, scheduler, 0.0))
    if k == 0:
        rewind["state"] = {n: t.clone() for n, t in state_of(model).items()}
    log.info("Round 0: training the dense network for %d epochs", end)
    epochs = _train_epochs(setup, scheduler, setup.make_optimizer(model), 0, range(0, end), keep_rewind_point)
    rounds = [RoundRecord(0, 0.0, _test(setup), epochs)]
    notify(Snapshot("trained", 0, end - 1, model, scheduler, 0.0, rounds[-1].test))
    record(rounds[-1])
    masks: dict[str, torch.Tensor] | None = None
    for r in range(1, config.rounds + 1):
        masks = prune_round_masks(
            model, config.prune_fraction, masks, strategy=config.strategy, last_layer_rate=config.last_layer_rate
        )
        ticket = make_ticket(model, rewind["state"], masks)
        model.load_state_dict(ticket.state_dict)
        scheduler = CompressionScheduler(model, device=setup.device)
        scheduler.load_state_dict({"masks_dict": ticket.masks})
        masks = {name: scheduler.masks[name].mask for name in ticket.masks}
        sparsity = masks_sparsity(masks)[0]
        log.info(
            "Round %d: %.2f%% of the conv/linear weights pruned (%.2f%% expected at a uniform rate); "
            "rewound to %s, retraining epochs %d..%d",
            r,
            sparsity,
            config.expected_sparsity(r),
            "the initialization" if k == 0 else f"epoch {k}",
            k,
            end - 1,
        )
        notify(Snapshot("ticket", r, k - 1, model, scheduler, sparsity))
        epochs = _train_epochs(setup, scheduler, setup.make_optimizer(model), r, range(k, end))
        rounds.append(RoundRecord(r, sparsity, _test(setup), epochs))
        notify(Snapshot("trained", r, end - 1, model, scheduler, sparsity, rounds[-1].test))
        record(rounds[-1])
    return IMPResult(rounds, dict(masks or {}))
