"""Sparsity and density of tensors and models (the original's ``distiller.utils`` metrics).

All values are fractions in [0, 1] except :func:`model_params_stats`/:func:`model_sparsity`,
which return percent, as the original did. Structure-level functions return 0 for tensors of a
rank they do not apply to (e.g. :func:`sparsity_3D` of a Linear weight), so a summary can call
every metric on every parameter.

Row/column convention (``transposed``): PyTorch stores a Linear weight as ``(out, in)`` and
computes ``x @ W.T``. The original counted rows and columns of the *transposed* matrix by
default (``transposed=True``): :func:`sparsity_cols` is then the fraction of all-zero rows of the
stored ``(out, in)`` tensor (output neurons), and :func:`sparsity_rows` the fraction of all-zero
stored columns (input features). ``transposed=False`` uses the stored layout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from distiller.sparsity.granularity import Blocks, Channels, Filters, Kernels

__all__ = [
    "volume",
    "density",
    "sparsity",
    "sparsity_3D",
    "density_3D",
    "sparsity_2D",
    "density_2D",
    "sparsity_ch",
    "density_ch",
    "non_zero_channels",
    "sparsity_blocks",
    "sparsity_matrix",
    "sparsity_rows",
    "density_rows",
    "sparsity_cols",
    "density_cols",
    "model_params",
    "model_params_stats",
    "model_sparsity",
    "model_params_size",
    "model_numel",
]

DEFAULT_PARAM_DIMS: tuple[int, ...] = (2, 4)
DEFAULT_PARAM_TYPES: tuple[str, ...] = ("weight", "bias")


def volume(tensor: torch.Tensor | Sequence[int]) -> int:
    """Number of elements of a tensor, or of a shape."""
    if isinstance(tensor, torch.Tensor):
        return tensor.numel()
    n = 1
    for d in tensor:
        n *= int(d)
    return n


def _nnz(t: torch.Tensor) -> int:
    return int(torch.count_nonzero(t.detach()).item())


def density(tensor: torch.Tensor) -> float:
    """Fraction of non-zero elements."""
    return _nnz(tensor) / tensor.numel()


def sparsity(tensor: torch.Tensor) -> float:
    """Fraction of zero elements (``1 - density``)."""
    return 1.0 - density(tensor)


def _structure_sparsity(groups: torch.Tensor) -> float:
    """Fraction of all-zero rows of a ``(n_structures, size)`` view."""
    n = groups.shape[0]
    nonzero = int(groups.ne(0).any(dim=1).sum().item())
    return 1 - nonzero / n


def sparsity_3D(tensor: torch.Tensor) -> float:
    """Fraction of all-zero filters of a 4-D (conv) tensor; 0 for other ranks."""
    if tensor.dim() != 4:
        return 0
    return _structure_sparsity(Filters().group_view(tensor.detach()))


def density_3D(tensor: torch.Tensor) -> float:
    return 1 - sparsity_3D(tensor)


def sparsity_2D(tensor: torch.Tensor) -> float:
    """Fraction of all-zero kernels of a 4-D tensor, or of all-zero rows of a 2-D one; else 0."""
    if tensor.dim() == 4:
        return _structure_sparsity(Kernels().group_view(tensor.detach()))
    if tensor.dim() == 2:
        return _structure_sparsity(tensor.detach())
    return 0


def density_2D(tensor: torch.Tensor) -> float:
    return 1 - sparsity_2D(tensor)


def non_zero_channels(tensor: torch.Tensor) -> torch.Tensor:
    """Indices (``(k, 1)``, as ``torch.nonzero``) of the input channels with a non-zero weight.

    Raises:
        ValueError: for a tensor that is not 4-D.
    """
    if tensor.dim() != 4:
        raise ValueError(f"non_zero_channels expects a 4-D tensor; got shape {tuple(tensor.shape)}.")
    return torch.nonzero(Channels().group_norms(tensor, p=1))


def sparsity_ch(tensor: torch.Tensor) -> float:
    """Fraction of all-zero input channels of a 4-D tensor; 0 for other ranks."""
    if tensor.dim() != 4:
        return 0
    return 1 - len(non_zero_channels(tensor)) / tensor.size(1)


def density_ch(tensor: torch.Tensor) -> float:
    return 1 - sparsity_ch(tensor)


def sparsity_blocks(tensor: torch.Tensor, block_shape: Sequence[int]) -> float:
    """Fraction of all-zero blocks of ``block_shape`` (see :class:`~distiller.sparsity.granularity.Blocks`).

    Any block shape that tiles the tensor works; the original accepted only ``[r, d, 1, 1]`` on
    4-D tensors (and for ``r, d > 1`` counted runs of ``r*d`` consecutive kernels rather than
    ``r``-by-``d`` rectangles).
    """
    return _structure_sparsity(Blocks(tuple(block_shape)).group_view(tensor.detach()))


def sparsity_matrix(tensor: torch.Tensor, dim: int) -> float:
    """Fraction of all-zero slices along ``dim`` of a 2-D tensor (``dim=0``: rows); 0 otherwise."""
    if tensor.dim() != 2:
        return 0
    t = tensor.detach()
    num_structs = t.size(dim)
    nonzero = _nnz(t.abs().sum(dim=1 - dim))
    return 1 - nonzero / num_structs


def sparsity_cols(tensor: torch.Tensor, transposed: bool = True) -> float:
    """Column sparsity of a 2-D tensor; with ``transposed`` the columns of ``W.T`` (stored rows)."""
    return sparsity_matrix(tensor, 0 if transposed else 1)


def density_cols(tensor: torch.Tensor, transposed: bool = True) -> float:
    return 1 - sparsity_cols(tensor, transposed)


def sparsity_rows(tensor: torch.Tensor, transposed: bool = True) -> float:
    """Row sparsity of a 2-D tensor; with ``transposed`` the rows of ``W.T`` (stored columns)."""
    return sparsity_matrix(tensor, 1 if transposed else 0)


def density_rows(tensor: torch.Tensor, transposed: bool = True) -> float:
    return 1 - sparsity_rows(tensor, transposed)


def model_params(
    model: nn.Module,
    param_dims: Sequence[int] = DEFAULT_PARAM_DIMS,
    param_types: Sequence[str] = DEFAULT_PARAM_TYPES,
) -> Iterator[tuple[str, torch.Tensor]]:
    """The ``state_dict`` tensors the original's model metrics count.

    A tensor counts when its rank is in ``param_dims`` and its name contains one of
    ``param_types`` (a substring test, as in the original: ``weight`` and ``bias``). Walking the
    state dict (not ``parameters()``) includes weights held as buffers, e.g. by quantizers.
    """
    for name, tensor in model.state_dict().items():
        if tensor.dim() in param_dims and any(kind in name for kind in param_types):
            yield name, tensor


def model_params_stats(
    model: nn.Module,
    param_dims: Sequence[int] = DEFAULT_PARAM_DIMS,
    param_types: Sequence[str] = DEFAULT_PARAM_TYPES,
) -> tuple[float, int, int]:
    """``(sparsity in percent, element count, non-zero count)`` over the counted tensors.

    Raises:
        ValueError: when no tensor is counted (the percentage would be undefined).
    """
    total = 0
    nnz = 0
    for _, tensor in model_params(model, param_dims, param_types):
        total += tensor.numel()
        nnz += _nnz(tensor)
    if total == 0:
        raise ValueError(f"The model has no {'/'.join(param_types)} tensors of rank {list(param_dims)}.")
    return (1 - nnz / total) * 100, total, nnz


def model_sparsity(
    model: nn.Module,
    param_dims: Sequence[int] = DEFAULT_PARAM_DIMS,
    param_types: Sequence[str] = DEFAULT_PARAM_TYPES,
) -> float:
    """Model sparsity in percent (as the original, despite the name)."""
    return model_params_stats(model, param_dims, param_types)[0]


def model_params_size(
    model: nn.Module,
    param_dims: Sequence[int] = DEFAULT_PARAM_DIMS,
    param_types: Sequence[str] = DEFAULT_PARAM_TYPES,
) -> int:
    """Number of non-zero elements of the counted tensors."""
    return model_params_stats(model, param_dims, param_types)[2]


def model_numel(
    model: nn.Module,
    param_dims: Sequence[int] = DEFAULT_PARAM_DIMS,
    param_types: Sequence[str] = DEFAULT_PARAM_TYPES,
) -> int:
    """Number of elements (zeros included) of the counted tensors."""
    return sum(t.numel() for _, t in model_params(model, param_dims, param_types))
