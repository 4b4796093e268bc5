"""Float ranges of tensors: the statistics that saturation values are chosen from.

Each function returns 0-dim tensors for the whole tensor, or 1-dim tensors (one value per slice) when
given a dimension:

* ``per_dim=k`` reduces every dimension but ``k`` -- per-channel ranges (``k=0`` is a weight's output
  channel, or a batch's sample);
* ``across_dim=k`` first takes the range of every slice along ``k`` and then averages them -- with
  ``k=0`` on activations, the mean over the batch of each sample's min and max. Averaging discards the
  rare extreme samples that would otherwise stretch the quantization range (the original's ``AVG`` clip).

Standard deviations are unbiased (``torch.std``'s default), as in the original; a single-element slice
has standard deviation 0.
"""

from __future__ import annotations

import torch

from distiller.errors import ConfigError, QuantizationError

__all__ = [
    "get_tensor_avg_max_abs",
    "get_tensor_avg_min_max",
    "get_tensor_max_abs",
    "get_tensor_mean_n_stds_max_abs",
    "get_tensor_mean_n_stds_min_max",
    "get_tensor_min_max",
    "get_tensor_stats",
]


def _slices(t: torch.Tensor, dim: int | None, argname: str) -> torch.Tensor:
    """``t`` as a 2-D tensor, one row per slice along ``dim`` (a single row when ``dim`` is None)."""
    if t.numel() == 0:
        raise QuantizationError("Cannot compute the range of an empty tensor; check the layer's input and output.")
    if dim is None:
        return t.reshape(1, -1)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -t.dim() <= dim < t.dim():
        raise ConfigError(
            f"Got {argname}={dim!r}, but the tensor has {t.dim()} dimension(s) (shape {tuple(t.shape)}); "
            f"use a dimension in [0, {t.dim() - 1}] or None."
        )
    return t.movedim(dim, 0).reshape(t.shape[dim], -1)


def _finish(values: torch.Tensor, dim: int | None) -> torch.Tensor:
    return values.squeeze(0) if dim is None else values


def _floating(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def get_tensor_min_max(t: torch.Tensor, per_dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum and maximum of ``t``, or of each slice along ``per_dim``.

    Raises:
        ConfigError: ``per_dim`` is not a dimension of ``t``.
    """
    return _min_max(t, per_dim, "per_dim")


def _min_max(t: torch.Tensor, dim: int | None, argname: str) -> tuple[torch.Tensor, torch.Tensor]:
    rows = _slices(t, dim, argname)
    return _finish(rows.amin(dim=1), dim), _finish(rows.amax(dim=1), dim)


def get_tensor_avg_min_max(t: torch.Tensor, across_dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the slices along ``across_dim`` of each slice's min and max (plain min/max when None)."""
    min_vals, max_vals = _min_max(t, across_dim, "across_dim")
    return _floating(min_vals).mean(), _floating(max_vals).mean()


def get_tensor_max_abs(t: torch.Tensor, per_dim: int | None = None) -> torch.Tensor:
    """Largest absolute value of ``t``, or of each slice along ``per_dim``."""
    min_vals, max_vals = get_tensor_min_max(t, per_dim=per_dim)
    return torch.maximum(min_vals.abs(), max_vals.abs())


def get_tensor_avg_max_abs(t: torch.Tensor, across_dim: int | None = None) -> torch.Tensor:
    """``max(|avg_min|, |avg_max|)`` from :func:`get_tensor_avg_min_max`."""
    avg_min, avg_max = get_tensor_avg_min_max(t, across_dim=across_dim)
    return torch.maximum(avg_min.abs(), avg_max.abs())


def _mean_std(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = rows.mean(dim=1)
    std = rows.std(dim=1) if rows.shape[1] > 1 else torch.zeros_like(mean)
    return mean, std


def get_tensor_mean_n_stds_min_max(
    t: torch.Tensor, dim: int | None = None, n_stds: float = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean -+ n_stds * std`` of ``t`` (or of each slice along ``dim``), kept inside its actual min / max.

    Raises:
        ConfigError: ``n_stds <= 0``, or ``dim`` is not a dimension of ``t``.
    """
    if isinstance(n_stds, bool) or not isinstance(n_stds, int | float) or not n_stds > 0:
        raise ConfigError(f"n_stds must be a number > 0, got {n_stds!r}; 2 or 3 are typical.")
    rows = _floating(_slices(t, dim, "dim"))
    mean, std = _mean_std(rows)
    min_vals = torch.maximum(rows.amin(dim=1), mean - n_stds * std)
    max_vals = torch.minimum(rows.amax(dim=1), mean + n_stds * std)
    return _finish(min_vals, dim), _finish(max_vals, dim)


def get_tensor_mean_n_stds_max_abs(t: torch.Tensor, dim: int | None = None, n_stds: float = 1) -> torch.Tensor:
    """``max(|min|, |max|)`` of :func:`get_tensor_mean_n_stds_min_max`."""
    min_vals, max_vals = get_tensor_mean_n_stds_min_max(t, dim=dim, n_stds=n_stds)
    return torch.maximum(min_vals.abs(), max_vals.abs())


def get_tensor_stats(t: torch.Tensor, per_dim: int | None = None) -> dict[str, torch.Tensor]:
    """The calibration statistics of ``t`` (or of each slice along ``per_dim``): min, max, mean, std and ``b``.

    ``b = mean(|x - mean|)`` is the scale of a Laplace distribution fitted to the values, used by ACIQ.
    The keys match those of the calibration statistics files, so the result can go where a stats dict goes.
    """
    rows = _floating(_slices(t, per_dim, "per_dim"))
    mean, std = _mean_std(rows)
    b = (rows - mean.unsqueeze(1)).abs().mean(dim=1)
    stats = {"min": rows.amin(dim=1), "max": rows.amax(dim=1), "mean": mean, "std": std, "b": b}
    return {k: _finish(v, per_dim) for k, v in stats.items()}
