"""Truncated SVD of a matrix, as pure functions: factors, rank by energy, energy kept.

The best rank-``k`` approximation of ``W`` (in Frobenius and spectral norm, Eckart-Young) keeps the
``k`` largest singular values: ``W ≈ U_k S_k V_kᵀ``. Written as a product of two thin matrices
``A = U_k S_k^a`` (``m × k``) and ``B = S_k^(1-a) V_kᵀ`` (``k × n``), it replaces one ``m × n``
layer by two layers with ``k·(m + n)`` weights, fewer than ``m·n`` when ``k < m·n / (m + n)``.

The *energy* of a rank is the share of ``‖W‖²_F = Σ s_i²`` that the kept singular values carry;
``1 - energy`` is the relative squared error of the approximation, so asking for an energy picks a
rank by how much of the layer it keeps rather than by a guess.

Singular values are computed in float64 (layers are small next to what float64 SVD handles, and
float32 loses the tail of the spectrum that energy selection looks at); the factors are returned
in the dtype of the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distiller.errors import ConfigError

__all__ = [
    "SPLITS",
    "LowRankFactors",
    "check_energy",
    "check_rank",
    "check_split",
    "energy_kept",
    "energy_rank",
    "singular_values",
    "truncated_svd",
]

SPLITS = ("sqrt", "first", "second")
"""Where ``S_k`` goes: half (``S^½``) to each factor, all to the first layer, or all to the second.

``sqrt`` is the default because both factors then have the same scale, which keeps SGD's updates
balanced when the factorized layer is fine-tuned. ``first`` is the original Distiller's choice
(``S_k V_kᵀ`` in the first layer, ``U_k`` with orthonormal columns in the second).
"""


@dataclass(frozen=True)
class LowRankFactors:
    """``matrix ≈ left @ right``.

    Attributes:
        left: ``m × k`` (the second layer's weight for a Linear: it produces the outputs).
        right: ``k × n`` (the first layer's weight: it reads the inputs).
        singular_values: all ``min(m, n)`` singular values of the matrix, descending (float64).
    """

    left: torch.Tensor
    right: torch.Tensor
    singular_values: torch.Tensor

    @property
    def rank(self) -> int:
        return int(self.right.shape[0])

    @property
    def energy(self) -> float:
        """Share of the squared Frobenius norm that the kept singular values carry."""
        return energy_kept(self.singular_values, self.rank)


def check_split(split: object, key: str = "split") -> str:
    """``split`` if it is one of :data:`SPLITS`.

    Raises:
        ConfigError: anything else; the message names ``key``.
    """
    if split not in SPLITS:
        raise ConfigError(f"{key} must be one of {', '.join(SPLITS)}; got {split!r}.")
    return str(split)


def _as_matrix(matrix: torch.Tensor) -> torch.Tensor:
    if matrix.dim() != 2:
        raise ConfigError(f"Truncated SVD takes a matrix; got a tensor of shape {tuple(matrix.shape)}.")
    return matrix.detach().to(torch.float64)


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """The singular values of ``matrix``, descending, in float64."""
    return torch.linalg.svdvals(_as_matrix(matrix))


def energy_kept(values: torch.Tensor, rank: int) -> float:
    """``Σ_{i<rank} s_i² / Σ s_i²`` of descending singular ``values`` (1.0 for a zero matrix)."""
    squares = values.to(torch.float64) ** 2
    total = float(squares.sum())
    if total == 0.0:
        return 1.0
    return min(1.0, float(squares[:rank].sum()) / total)


def check_energy(energy: object, key: str = "energy") -> float:
    """``energy`` as a float in (0, 1].

    Raises:
        ConfigError: not a number in (0, 1]; the message names ``key``.
    """
    if isinstance(energy, bool) or not isinstance(energy, (int, float)) or not 0.0 < float(energy) <= 1.0:
        raise ConfigError(
            f"{key} must be a fraction in (0, 1] (the share of the squared singular values to keep); got {energy!r}."
        )
    return float(energy)


def energy_rank(values: torch.Tensor, energy: float) -> int:
    """The smallest rank whose singular values' squared sum reaches ``energy`` of the total.

    Args:
        values: descending singular values.
        energy: the fraction in (0, 1] to keep; 1.0 gives the numerical full rank.

    Raises:
        ConfigError: ``energy`` outside (0, 1].
    """
    energy = check_energy(energy)
    squares = values.to(torch.float64) ** 2
    total = float(squares.sum())
    if total == 0.0 or len(values) == 0:
        return 1  # a zero matrix is reproduced by any rank; one keeps the layer valid
    shares = torch.cumsum(squares, 0) / total
    # A tolerance of a few ulps, so that energy=1.0 is reached despite rounding in the cumulative sum,
    # and trailing zero singular values (an exactly low-rank matrix) are not kept for nothing.
    reached = torch.nonzero(shares >= energy - 1e-12)
    return int(reached[0]) + 1 if len(reached) else len(values)


def check_rank(rank: object, full_rank: int | None = None, key: str = "rank") -> int:
    """``rank`` as an int in [1, full_rank] (``full_rank`` None: only positivity is checked).

    Raises:
        ConfigError: not an integer in range; the message names ``key`` and the allowed range.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"{key} must be a positive integer; got {rank!r}.")
    if full_rank is not None and rank > full_rank:
        raise ConfigError(
            f"{key} {rank} exceeds the full rank {full_rank} of the layer (the smaller side of its weight matrix); "
            f"use a rank of at most {full_rank}."
        )
    return rank


def truncated_svd(
    matrix: torch.Tensor, rank: int | None = None, *, energy: float | None = None, split: str = "sqrt"
) -> LowRankFactors:
    """The rank-``rank`` factors ``left @ right`` closest to ``matrix``.

    Args:
        matrix: an ``m × n`` matrix.
        rank: how many singular values to keep, in [1, min(m, n)].
        energy: instead of ``rank``: keep the smallest rank that carries this share of the energy
            (see :func:`energy_rank`); one SVD serves both the choice and the factors.
        split: where the singular values go (:data:`SPLITS`).

    Raises:
        ConfigError: ``matrix`` is not 2-D, neither or both of ``rank`` and ``energy``, either out
            of range, unknown ``split``.
    """
    check_split(split)
    if (rank is None) == (energy is None):
        raise ConfigError("Give exactly one of rank (how many singular values to keep) and energy (a fraction).")
    work = _as_matrix(matrix)
    if rank is not None:
        check_rank(rank, min(work.shape))
    u, s, vh = torch.linalg.svd(work, full_matrices=False)
    if rank is None:
        rank = energy_rank(s, energy)  # type: ignore[arg-type]
    u, s_k, vh = u[:, :rank], s[:rank], vh[:rank]
    if split == "sqrt":
        root = s_k.sqrt()
        left, right = u * root, root[:, None] * vh
    elif split == "first":
        left, right = u, s_k[:, None] * vh
    else:
        left, right = u * s_k, vh
    dtype = matrix.dtype if matrix.is_floating_point() else torch.float32
    return LowRankFactors(left.to(dtype).contiguous(), right.to(dtype).contiguous(), s)
