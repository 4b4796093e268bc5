"""Summaries of one batch of activations: the statistics of the original's classifier app.

Each function takes one batch ``(batch, channels, ...)`` and returns a CPU tensor: a scalar for the
feature-map sparsity, one value per channel for the others. A
:class:`~distiller.analysis.activations.SummaryActivationStatsCollector` averages them over batches,
weighted by batch size. They are pure functions, so pruners, tests and notebooks can use them on
any tensor.

Activation-ranked pruners use the per-channel ones: Network Trimming (Hu et al. 2016) removes the
filters whose outputs are most often zero after the activation (highest APoZ), the mean-activation
criterion those with the smallest mean.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from distiller.errors import ConfigError

__all__ = [
    "SUMMARY_FUNCTIONS",
    "activation_channels_apoz",
    "activation_channels_l1",
    "activation_channels_means",
    "activation_sparsity_ofm",
]


def _per_sample_channels(activation: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` over the spatial positions of each (sample, channel): ``(batch, channels)``.

    A 2-D activation ``(batch, features)`` has no spatial extent: each feature is a channel and
    its value is its own statistic (the original reduced over features here, giving one number per
    sample, which cannot rank anything).
    """
    if activation.dim() == 2:
        return fn(activation.unsqueeze(-1))
    if activation.dim() < 2:
        raise ConfigError(
            f"Channel statistics need a (batch, channels, ...) activation; got shape {tuple(activation.shape)}."
        )
    return fn(activation.reshape(activation.shape[0], activation.shape[1], -1))


def activation_channels_l1(activation: torch.Tensor) -> torch.Tensor:
    """Batch mean of each channel's L1 norm over its feature map (one value per channel)."""
    with torch.no_grad():
        return _per_sample_channels(activation, lambda x: x.abs().sum(dim=-1)).mean(dim=0).cpu()


def activation_channels_means(activation: torch.Tensor) -> torch.Tensor:
    """Batch mean of each channel's mean value over its feature map (one value per channel)."""
    with torch.no_grad():
        return _per_sample_channels(activation, lambda x: x.mean(dim=-1)).mean(dim=0).cpu()


def activation_channels_apoz(activation: torch.Tensor) -> torch.Tensor:
    """APoZ (average percentage of zeros, Hu et al. 2016) of each channel, in percent.

    100 means the channel was always zero: the least useful filter under Network Trimming.
    """
    with torch.no_grad():
        nonzero = _per_sample_channels(activation, lambda x: x.ne(0).float().mean(dim=-1))
        return 100 - nonzero.mean(dim=0).mul(100).cpu()


def activation_sparsity_ofm(activation: torch.Tensor) -> torch.Tensor:
    """Percentage of zeros in the whole output feature map of the batch (a 0-d tensor).

    The original's ``sparsity_ofm`` (``100 * sparsity(t)``): how much of a layer's output a
    sparse-activation kernel could skip.
    """
    with torch.no_grad():
        if activation.numel() == 0:
            return torch.tensor(0.0)
        return activation.eq(0).float().mean().mul(100).cpu()


SUMMARY_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sparsity_ofm": activation_sparsity_ofm,
    "l1_channels": activation_channels_l1,
    "apoz_channels": activation_channels_apoz,
    "mean_channels": activation_channels_means,
}
"""Statistic names a summary collector knows without an explicit ``summary_fn`` (the original's
classifier collected these four)."""
