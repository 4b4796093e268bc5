"""The files of an AMC search: the episodes CSV, the best network's schedule YAML, the rewards plot.

``amc_episodes.csv``
    One row per episode (rewritten atomically after every episode, so it is complete even if the
    search is stopped): ``episode, heatup, reward, top1, top5, loss, macs, normalized_macs, params,
    seconds`` and one ``action/<layer>`` column per step (the fraction of the step's channel group
    removed; ``<layer>`` is the step's representative layer).
``amc_best_schedule.yaml``
    A compression schedule that reproduces the best network's per-group channel densities: one
    one-shot ``L1RankedStructureParameterPruner`` per distinct fraction, listing the representative
    weight of every group pruned by that fraction, with ``group_dependency: Coupled`` (so each group
    is ranked and pruned as a whole, which is what the search did), and a thinning extension at
    epoch 0. The coupled ranking scores a channel by all its producer and consumer slices, so the
    schedule removes the same *number* of channels from every group; it removes the same channels
    too where the search's ranking agreed (``l1-rank`` usually does); the exact network is the
    thinned checkpoint.
``amc_rewards.png``
    Reward, top-1 and normalized MACs per episode, with the best reward so far and the heat-up marked.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import yaml

from distiller.amc.search import EpisodeRecord
from distiller.amc.steps import StepSpec
from distiller.fileio import atomic_output

__all__ = [
    "CSV_COLUMNS",
    "csv_header",
    "plot_rewards",
    "schedule_dict",
    "sparsity_for_count",
    "write_episodes_csv",
    "write_schedule",
]

CSV_COLUMNS = ("episode", "heatup", "reward", "top1", "top5", "loss", "macs", "normalized_macs", "params", "seconds")


def csv_header(steps: Sequence[StepSpec]) -> list[str]:
    return [*CSV_COLUMNS, *(f"action/{s.layer}" for s in steps)]


def _row(r: EpisodeRecord) -> list[object]:
    return [
        r.episode,
        int(r.heatup),
        f"{r.reward:.6f}",
        f"{r.top1:.3f}",
        f"{r.top5:.3f}",
        f"{r.loss:.5f}",
        r.macs,
        f"{r.normalized_macs:.6f}",
        r.params,
        f"{r.seconds:.3f}",
        *(f"{a:.6f}" for a in r.actions),
    ]


def write_episodes_csv(records: Sequence[EpisodeRecord], steps: Sequence[StepSpec], path: str | Path) -> Path:
    """Write every record so far, atomically."""
    path = Path(path)
    with atomic_output(path, "AMC episodes CSV") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(csv_header(steps))
        writer.writerows(_row(r) for r in records)
    return path


def sparsity_for_count(removed: int, channels: int) -> float:
    """A short ``desired_sparsity`` whose ``floor(sparsity * channels)`` (the coupled pruner's count) is ``removed``."""
    for digits in (4, 6, 9):
        value = round(removed / channels, digits)
        if math.floor(value * channels) == removed:
            return value
    return round((removed + 0.5) / channels, 9)


def schedule_dict(
    record: EpisodeRecord, steps: Sequence[StepSpec], pattern: str, *, arch: str | None, dataset: str | None
) -> dict:
    """The schedule (as a dict in the YAML schema) that reproduces ``record``'s channel densities."""
    by_sparsity: dict[float, list[str]] = {}
    for step, removed in zip(steps, record.removed):
        if removed > 0:
            by_sparsity.setdefault(sparsity_for_count(removed, step.num_channels), []).append(step.tensor)
    group_type, remover, func = (
        ("Filters", "FilterRemover", "remove_filters")
        if pattern == "filters"
        else ("Channels", "ChannelRemover", "remove_channels")
    )
    pruners = {}
    for i, (sparsity, weights) in enumerate(sorted(by_sparsity.items())):
        pruners[f"amc_{i}_{round(100 * sparsity)}pct"] = {
            "class": "L1RankedStructureParameterPruner",
            "group_type": group_type,
            "desired_sparsity": sparsity,
            "group_dependency": "Coupled",
            "weights": weights,
        }
    schedule: dict = {"version": 1, "pruners": pruners}
    policies: list[dict] = [{"pruner": {"instance_name": name}, "epochs": [0]} for name in pruners]
    if pruners:
        thinner = {"class": remover, "thinning_func_str": func}
        if arch:
            thinner["arch"] = arch
        if dataset:
            thinner["dataset"] = dataset
        schedule["extensions"] = {"net_thinner": thinner}
        policies.append({"extension": {"instance_name": "net_thinner"}, "epochs": [0]})
    schedule["policies"] = policies
    return schedule


def write_schedule(
    record: EpisodeRecord,
    steps: Sequence[StepSpec],
    pattern: str,
    path: str | Path,
    *,
    arch: str | None = None,
    dataset: str | None = None,
    episodes: int | None = None,
) -> Path:
    """Write :func:`schedule_dict` as YAML with a header that says where it came from, atomically."""
    path = Path(path)
    header = [
        f"# AMC: the best network of {episodes if episodes is not None else 'the'} episodes (episode {record.episode}, "
        f"reward {record.reward:.5f}),",
        f"# top-1 {record.top1:.3f} on the reward subset, MACs {record.macs:,} ({100 * record.normalized_macs:.2f}% "
        "of the dense network's).",
        "# One-shot coupled L1 ranking of each channel group at epoch 0, then thinning (see docs/algorithms/amc.md).",
    ]
    if arch:
        header.append(f"# arch: {arch}")
    if dataset:
        header.append(f"# dataset: {dataset}")
    densities = ", ".join(f"{s.layer}={1 - a:.3f}" for s, a in zip(steps, record.actions))
    header.append(f"# channel densities: {densities}")
    body = yaml.safe_dump(schedule_dict(record, steps, pattern, arch=arch, dataset=dataset), sort_keys=False)
    with atomic_output(path, "AMC schedule") as tmp:
        tmp.write_text("\n".join(header) + "\n" + body)
    return path


def plot_rewards(records: Sequence[EpisodeRecord], path: str | Path) -> Path:
    """Draw reward, top-1 and normalized MACs per episode to a PNG (matplotlib, imported here; Agg, no pyplot).

    Raises:
        ConfigError: matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        from distiller.errors import ConfigError

        raise ConfigError(
            "Drawing amc_rewards.png needs matplotlib: pip install matplotlib (or 'distiller-nn[analysis]')."
        ) from e
    from distiller.analysis.charts import save_figure

    episodes = [r.episode for r in records]
    rewards = [r.reward for r in records]
    best, best_so_far = -math.inf, []
    for value in rewards:
        best = max(best, value)
        best_so_far.append(best)
    fig = Figure(figsize=(8, 6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(episodes, rewards, ".", markersize=3, label="reward")
    top.plot(episodes, best_so_far, "-", label="best so far")
    top.set_ylabel("reward")
    top.legend(loc="lower right")
    bottom.plot(episodes, [r.top1 for r in records], ".", markersize=3, label="top-1 (reward subset)")
    bottom.set_ylabel("top-1 (%)")
    bottom.set_xlabel("episode")
    macs = bottom.twinx()
    macs.plot(episodes, [r.normalized_macs for r in records], ".", markersize=2, color="tab:red", label="MACs")
    macs.set_ylabel("normalized MACs")
    heatup = sum(1 for r in records if r.heatup)
    if 0 < heatup < len(records):
        for ax in (top, bottom):
            ax.axvline(heatup + 0.5, color="gray", linestyle="--", linewidth=1)
    fig.suptitle("AMC search")
    return save_figure(fig, path)
