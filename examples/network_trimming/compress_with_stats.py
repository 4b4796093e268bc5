#!/usr/bin/env python3
"""``distiller classify`` plus the data-driven inputs some pruners need, which it does not collect yet.

Same flags and output as ``distiller classify``::

    python examples/network_trimming/compress_with_stats.py -a simplenet_digits --dataset digits \
        --epochs 12 --lr 0.1 -b 64 -j 0 --deterministic \
        --compress examples/network_trimming/simplenet_digits.apoz_agp.yaml

What it adds to a training run:

- **Activation statistics** for the activation-ranked filter pruners
  (``ActivationAPoZRankedFilterPruner[_AGP]``, ``ActivationMeanRankedFilterPruner[_AGP]``): a
  :class:`~distiller.analysis.SummaryActivationStatsCollector` for ``apoz_channels`` and one for
  ``mean_channels`` watch every ReLU of the model during training and validation (the original's
  ``--act-stats``). The statistics are reset right after the pruners of an epoch ran, so a pruner
  firing at epoch N ranks filters by what the network did during epoch N-1: schedule these
  pruners from epoch 1 on (at epoch 0 there is nothing to rank by, and the pruner says so).
- **Feature-map samples** for ``FMReconstructionChannelPruner``: right before each epoch at which
  such a pruner fires, ``--fm-batches`` training batches are run through the current model (in
  eval mode, so batch-norm statistics do not move) and the inputs/outputs of the layers it prunes
  are sampled; the pruner then re-fits the kept weights to reproduce those outputs.

The CLI does not collect these yet; when it does, the schedules run unchanged with
``distiller classify``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from itertools import islice
from typing import Any

from distiller.analysis import SummaryActivationStatsCollector
from distiller.apps.classifier import ClassifierApp
from distiller.cli.classify import report_result, start_run
from distiller.cli.classify_parser import build_classify_parser, options_from_args
from distiller.cli.main import run_guarded
from distiller.pruning import FMReconstructionChannelPruner

STATISTICS = ("apoz_channels", "mean_channels")


class StatsClassifierApp(ClassifierApp):
    """The classifier app, with activation statistics and feature-map samples for the pruners."""

    fm_batches = 4

    def attach_compression(self) -> None:
        super().attach_compression()
        self.collectors = [SummaryActivationStatsCollector(self.model, stat).start() for stat in STATISTICS]
        scheduler_epoch_begin = self.scheduler.on_epoch_begin

        def on_epoch_begin(epoch: int, optimizer: Any = None, **kwargs: Any) -> None:
            scheduler_epoch_begin(epoch, optimizer, **kwargs)  # the pruners read last epoch's statistics
            for collector in self.collectors:
                collector.reset()

        self.scheduler.on_epoch_begin = on_epoch_begin
        for entry in self.scheduler.entries:
            if isinstance(getattr(entry.policy, "pruner", None), FMReconstructionChannelPruner):
                self._sample_before_firing(entry.policy)

    def _training_batches(self) -> Iterator[Any]:
        return islice(iter(self._data(test_only=False).train), self.fm_batches)

    def _sample_before_firing(self, policy: Any) -> None:
        policy_epoch_begin = policy.on_epoch_begin

        def on_epoch_begin(*args: Any, **kwargs: Any) -> None:
            was_training = self.model.training
            self.model.eval()
            batches = [(x.to(self.device), y) for x, y in self._training_batches()]
            policy.pruner.collect_feature_maps(self.model, batches)
            self.model.train(was_training)
            policy_epoch_begin(*args, **kwargs)

        policy.on_epoch_begin = on_epoch_begin


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """``distiller classify``'s training mode, with :class:`StatsClassifierApp`."""
    opts = options_from_args(args)
    app = StatsClassifierApp(opts, start_run(opts, argv))
    app.fm_batches = args.fm_batches
    report_result(opts, app.train())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_classify_parser(prog="compress_with_stats.py")
    parser.add_argument("--fm-batches", type=int, default=4, metavar="N",
                        help="training batches sampled for feature-map reconstruction (default: 4)")
    args = parser.parse_args(argv)
    return run_guarded(run, args, ["compress_with_stats.py", *argv], debug=False)


classify = main  # the runner interface of tests/test_examples.py: classify(argv) -> exit status


if __name__ == "__main__":
    sys.exit(main())
