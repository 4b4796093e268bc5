"""``--amc``: the classifier app's AMC mode (automated per-layer pruning ratios by reinforcement learning).

The search is :func:`~distiller.amc.search.amc_search` on an :class:`~distiller.amc.environment.AMCEnv`;
this module gives them the app's data and writes the files under the run's log dir (DESIGN §7):

``amc_episodes.csv``
    one row per episode (reward, accuracy, MACs, parameters, seconds, one action column per step),
    rewritten atomically after every episode.
``amc_best_schedule.yaml``
    a schedule that reproduces the best network's channel densities (``distiller validate`` accepts it).
``amc_best_checkpoint.pth.tar``
    the best network, thinned, with its thinning plans (``--resume-from`` rebuilds it in a dense model
    of the same ``--arch``), and its test accuracy.
``amc_rewards.png``
    reward and accuracy per episode (when matplotlib is installed).
``amc_episode_<n>_checkpoint.pth.tar``
    with ``--amc-save-chkpts``, every episode's network.

Rewards read a fixed, seeded subset of the training split with evaluation transforms, never the test
set (DESIGN §7): ``--effective-valid-size`` (a fraction of the training split, or a sample count) says
how large, so ``--evs 500`` scores every episode on 500 images. Fine-tuning (``--amc-ft-epochs``,
``--amc-ft-frequency``) reads ``--effective-train-size`` of the training split per epoch. The test set
is read once, for the best network (the result line).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from distiller.apps.amc_options import check_amc_options, read_amc_cfg
from distiller.apps.optimizers import build_optimizer
from distiller.checkpoint import build_checkpoint
from distiller.checkpoint.save import atomic_save
from distiller.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from distiller.amc.environment import EpisodeOutcome
    from distiller.amc.search import AMCSearchResult, EpisodeRecord
    from distiller.apps.classifier import ClassifierApp, ClassifierResult

__all__ = ["BEST_CHECKPOINT", "BEST_SCHEDULE", "EPISODES_CSV", "REWARDS_PLOT", "amc_mode"]

log = logging.getLogger(__name__)

EPISODES_CSV = "amc_episodes.csv"
BEST_SCHEDULE = "amc_best_schedule.yaml"
BEST_CHECKPOINT = "amc_best_checkpoint.pth.tar"
REWARDS_PLOT = "amc_rewards.png"


def _require_gymnasium() -> None:
    try:
        import gymnasium  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"--amc needs gymnasium ({e}); install the AMC extra: pip install 'distiller-nn[amc]'."
        ) from e


class _AMCRun:
    """What happens after each episode: the CSV, a log line, and optional per-episode checkpoints."""

    def __init__(self, app: ClassifierApp, steps: list) -> None:
        self.app, self.steps = app, steps
        self.records: list[EpisodeRecord] = []
        self.csv_path = app.run_dir / EPISODES_CSV

    def on_episode(self, record: EpisodeRecord, outcome: EpisodeOutcome) -> None:
        from distiller.amc.outputs import write_episodes_csv

        self.records.append(record)
        write_episodes_csv(self.records, self.steps, self.csv_path)
        if self.csv_path not in self.app.saved:
            self.app.saved.append(self.csv_path)
        log.info(
            "AMC episode %d%s: reward %.5f, acc@1 %.3f on the reward subset, MACs %.2f%% (%s), %.2fs",
            record.episode,
            " (heat-up)" if record.heatup else "",
            record.reward,
            record.top1,
            100 * record.normalized_macs,
            f"{record.macs:,}",
            record.seconds,
        )
        if self.app.opts.amc.save_chkpts:
            save_amc_checkpoint(self.app, outcome.model, f"amc_episode_{record.episode:04d}", record, self.steps)


def save_amc_checkpoint(
    app: ClassifierApp, model: nn.Module, name: str, record: EpisodeRecord, steps: list, **extras: Any
) -> Path:
    """Save a thinned network as ``<log dir>/<name>_checkpoint.pth.tar`` (epoch -1: ``--resume-from``
    fine-tunes it from epoch 0) and list it in ``app.saved``."""
    amc = app.opts.amc
    info = {
        "episode": record.episode,
        "reward": record.reward,
        "protocol": amc.protocol,
        "target_density": amc.target_density,
        "agent_algo": amc.agent_algo,
        "macs": record.macs,
        "normalized_macs": record.normalized_macs,
        "layers": [s.layer for s in steps],
        "removed_channels": list(record.removed),
        "densities": list(record.densities),
    }
    checkpoint = build_checkpoint(
        model=model,
        arch=app.opts.arch,
        dataset=app.dataset,
        epoch=-1,
        extras={**extras, "current_top1": record.top1, "current_top5": record.top5, "seed": app.seed, "amc": info},
    )
    path = app.run_dir / (name if name.endswith(".pth.tar") else f"{name}_checkpoint.pth.tar")
    atomic_save(checkpoint, path)
    app.saved.append(path)
    return path


def _report(result: AMCSearchResult) -> str:
    """The search in a few lines and the best network's densities (headers avoid ``Top1``)."""
    best = result.best
    head = (
        f"AMC ({result.algorithm}): {len(result.records)} episode(s); best: episode {best.episode}, reward "
        f"{best.reward:.5f}, acc@1 {best.top1:.3f} on the reward subset, MACs {best.macs:,} of {result.dense_macs:,} "
        f"({100 * best.normalized_macs:.2f}%), parameters {best.params:,} of {result.dense_params:,}"
    )
    rows = [
        (s.layer, s.num_channels, s.num_channels - r, f"{d:.3f}")
        for s, r, d in zip(result.steps, best.removed, best.densities)
    ]
    return head + "\n" + tabulate(rows, headers=["layer", "channels", "kept", "density"], tablefmt="github")


def _write_outputs(app: ClassifierApp, result: AMCSearchResult) -> None:
    from distiller.amc.outputs import plot_rewards, write_schedule

    amc = app.opts.amc
    path = write_schedule(
        result.best,
        result.steps,
        amc.prune_pattern,
        app.run_dir / BEST_SCHEDULE,
        arch=app.opts.arch,
        dataset=app.dataset,
        episodes=len(result.records),
    )
    app.saved.append(path)
    try:
        app.saved.append(plot_rewards(result.records, app.run_dir / REWARDS_PLOT))
    except ConfigError as e:  # matplotlib is optional
        log.warning("%s", e)


def amc_mode(app: ClassifierApp) -> ClassifierResult:
    """``--amc``: search, write the files, then test the best network (the result line) and save it.

    Raises:
        ConfigError: bad ``--amc*`` values or combinations, a missing RL dependency, an unreachable
            target (all before any episode runs).
    """
    from distiller.apps.classifier import ClassifierResult  # the app module imports this one

    check_amc_options(app.opts)
    _require_gymnasium()
    from distiller.amc.environment import AMCEnv
    from distiller.amc.evaluation import CachedBatches, Finetuner
    from distiller.amc.search import amc_search

    o, amc = app.opts, app.opts.amc
    layers = read_amc_cfg(amc.cfg, o.arch) if amc.cfg else None
    config = amc.env_config(layers)
    loaders = app._data(test_only=False)
    batches = CachedBatches(loaders.calibration_loader(o.effective_valid_size), app.device)
    finetuner = None
    if config.ft_epochs or config.ft_frequency:
        finetuner = Finetuner(
            loaders.train,
            lambda params: build_optimizer(o.optimizer, params, o.lr, o.momentum, o.weight_decay),
            app.device,
        )
    dataset = None if getattr(app.model, "input_shape", None) else app.dataset
    env = AMCEnv(app.model, batches, config, dataset=dataset, finetuner=finetuner, seed=app.seed)
    log.info(
        "AMC: %s, %d heat-up + %d training episodes of %d steps (%s, %s, %s), target density %s; rewards on %d "
        "training-split samples%s",
        amc.agent_algo,
        amc.heatup_episodes,
        amc.training_episodes,
        env.num_steps,
        config.protocol,
        config.prune_pattern,
        config.prune_method,
        config.target_density,
        batches.num_samples,
        f", fine-tuning {config.ft_epochs} epoch(s) per episode" if config.ft_epochs else "",
    )
    run = _AMCRun(app, list(env.steps))
    result = amc_search(
        env,
        algorithm=amc.agent_algo,
        heatup_episodes=amc.heatup_episodes,
        training_episodes=amc.training_episodes,
        seed=app.seed,
        on_episode=run.on_episode,
    )
    _write_outputs(app, result)
    app.model = result.best_model.to(app.device)
    test = app.test(loaders)
    save_amc_checkpoint(
        app, app.model, BEST_CHECKPOINT, result.best, result.steps, test_top1=test.top1, test_top5=test.top5
    )
    return ClassifierResult(test, saved=list(app.saved), reports=[_report(result)])
