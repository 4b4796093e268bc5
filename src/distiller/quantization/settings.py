"""How one tensor is quantized (bits, mode, clipping) and the parameters that follow from it.

:class:`QuantSettings` is plain data; :func:`params_from_stats` (static mode: calibration statistics)
and :func:`params_from_tensor` (dynamic mode: the tensor at hand) turn it into Distiller's
``(scale, zero_point)``, and :class:`TensorQuantMetadata` travels on a quantized tensor so that the
next wrapper reads it instead of quantizing again (as in the original).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch

from distiller.quantization.aciq import clip_range_from_stats, clip_range_from_tensor
from distiller.quantization.linear import quant_params_for_range, quantized_range_of
from distiller.quantization.modes import ClipMode, LinearQuantMode

__all__ = ["QuantSettings", "TensorQuantMetadata", "params_from_stats", "params_from_tensor", "sat_range_params"]


@dataclass(frozen=True)
class QuantSettings:
    """Bits, mode and clipping of one tensor (an activation, or the weights of a layer)."""

    num_bits: int
    mode: LinearQuantMode
    clip_mode: ClipMode = ClipMode.NONE
    clip_n_stds: float | None = None
    clip_half_range: bool = False
    per_channel: bool = False

    @property
    def q_range(self) -> tuple[int, int]:
        """The integer range ``(min, max)`` of quantized values."""
        return quantized_range_of(self.num_bits, self.mode)

    def with_(self, **changes: Any) -> QuantSettings:
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """Plain data for reports (``layer_quant_params.yaml``)."""
        return {
            "num_bits": self.num_bits,
            "quant_mode": self.mode.name,
            "clip_mode": self.clip_mode.name,
            "clip_n_stds": self.clip_n_stds,
            "clip_half_range": self.clip_half_range,
            "per_channel": self.per_channel,
        }


class TensorQuantMetadata(NamedTuple):
    """The parameters a fake-quantized tensor was quantized with (Distiller's convention)."""

    scale: torch.Tensor
    zero_point: torch.Tensor
    min_q_val: int
    max_q_val: int


def sat_range_params(settings: QuantSettings, sat_min: torch.Tensor, sat_max: torch.Tensor):
    """``(scale, zero_point)`` for a saturation range."""
    return quant_params_for_range(settings.num_bits, settings.mode, sat_min, sat_max)


def params_from_stats(settings: QuantSettings, stats: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Static mode: parameters from one calibration-statistics entry (``min``, ``max``, ``avg_min``, ...)."""
    sat_min, sat_max = clip_range_from_stats(
        stats,
        settings.clip_mode,
        settings.num_bits,
        settings.mode,
        num_stds=settings.clip_n_stds,
        half_range=settings.clip_half_range,
    )
    return sat_range_params(
        settings, torch.as_tensor(sat_min, dtype=torch.float32), torch.as_tensor(sat_max, dtype=torch.float32)
    )


def params_from_tensor(
    settings: QuantSettings, t: torch.Tensor, per_dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic mode (and weights): parameters from the values of ``t`` (per ``per_dim`` slice if given)."""
    sat_min, sat_max = clip_range_from_tensor(
        t,
        settings.clip_mode,
        settings.num_bits,
        settings.mode,
        num_stds=settings.clip_n_stds,
        half_range=settings.clip_half_range,
        per_dim=per_dim,
    )
    return sat_range_params(settings, sat_min, sat_max)
