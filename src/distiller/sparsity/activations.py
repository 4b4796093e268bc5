"""Per-channel statistics of activations (the original's ``activation_channels_*`` helpers).

Used by activation-ranked pruners (APoZ: Hu et al., "Network Trimming"; mean activation:
Molchanov et al.) through the activation-statistics collectors. Each function reduces one batch
to one value per channel, on the CPU, so that per-batch values (possibly from several devices)
can be averaged by the caller.

Shapes: ``(batch, channels, h, w)`` feature maps, or ``(batch, features)`` for 2-D
activations, where each feature is a channel. (The original reduced 2-D activations per
*sample* instead of per feature, which gave one number per batch.)
"""

from __future__ import annotations

import torch

__all__ = ["activation_channels_l1", "activation_channels_means", "activation_channels_apoz"]


def _per_sample_channel(activation: torch.Tensor, what: str) -> torch.Tensor:
    """``(batch, channels, h*w)`` or ``(batch, features, 1)``."""
    if activation.dim() == 4:
        return activation.reshape(activation.size(0), activation.size(1), -1)
    if activation.dim() == 2:
        return activation.unsqueeze(-1)
    raise ValueError(f"{what}: unsupported activation shape {tuple(activation.shape)} (expected 2-D or 4-D).")


def activation_channels_l1(activation: torch.Tensor) -> torch.Tensor:
    """Batch mean of each channel's L1 norm (sum of magnitudes over the feature map)."""
    with torch.no_grad():
        fm = _per_sample_channel(activation.detach(), "activation_channels_l1")
        return fm.abs().sum(dim=2).mean(dim=0).cpu()


def activation_channels_means(activation: torch.Tensor) -> torch.Tensor:
    """Batch mean of each channel's mean activation (global average pooling, then batch mean)."""
    with torch.no_grad():
        fm = _per_sample_channel(activation.detach(), "activation_channels_means")
        return fm.mean(dim=2).mean(dim=0).cpu()


def activation_channels_apoz(activation: torch.Tensor) -> torch.Tensor:
    """Average Percentage of Zeros of each channel (percent, 0-100), averaged over the batch."""
    with torch.no_grad():
        fm = _per_sample_channel(activation.detach(), "activation_channels_apoz")
        nonzero_fraction = fm.ne(0).sum(dim=2).float() / fm.size(2)
        return 100 - nonzero_fraction.mean(dim=0).mul(100).cpu()
