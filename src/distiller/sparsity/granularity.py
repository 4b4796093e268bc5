"""Granularities: how a weight tensor is cut into the structures that are pruned together.

A :class:`Granularity` maps a tensor to a 2-D *group view* ``(n_structures, structure_size)``
(one row per structure) and back. Everything structured pruning needs follows from that pair:
per-structure norms (for ranking and thresholding) and the expansion of a per-structure keep/drop
map back to a full mask. Adding a granularity means writing the view and its inverse, nothing
else.

Conventions (those of the original Distiller, which follow PyTorch's weight layouts):

* Conv weights are ``(out_channels, in_channels / groups, kh, kw)``; Linear weights are
  ``(out_features, in_features)``.
* ``Filters``/``3D``: one structure per output channel (dim 0). On a 2-D weight that is a row.
* ``Channels``: one structure per input channel (dim 1). On a 2-D weight that is a column, as in
  the original ("Channels" on a Linear weight means its input features).
* ``Kernels``/``2D``: one structure per ``(out, in)`` pair, i.e. a 2-D convolution kernel.
* ``Rows``/``Cols``: rows (dim 0) and columns (dim 1) of a 2-D weight.
* ``Blocks``: equal blocks of any ``block_shape`` that divides the tensor's shape.
* ``Layer``/``4D``: the whole tensor is one structure.
* ``NM(n, m)``: groups of ``m`` consecutive weights along the *input* dimension (dim 1: input
  channels of a conv at each ``(out, kh, kw)`` position, input features of a Linear weight), the
  layout sparse tensor cores (2:4) expect. N:M masks keep ``n`` of each group (see
  :func:`distiller.sparsity.criteria.nm_mask`); as a ranking granularity a group is a structure.

``group_len`` joins that many adjacent structures into one (the original's "adjacent-structure
grouping"), so pruning removes them together, e.g. channels in multiples of 4 or 8 for hardware.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from distiller.errors import ConfigError
from distiller.registry import did_you_mean

__all__ = [
    "Granularity",
    "Element",
    "Filters",
    "Channels",
    "Kernels",
    "Rows",
    "Cols",
    "Blocks",
    "Layer",
    "NM",
    "GRANULARITY_NAMES",
    "granularity_from_name",
    "lp_norm",
]

NormSpec = int | float | str


def lp_norm(groups: torch.Tensor, p: NormSpec = 1) -> torch.Tensor:
    """Norm of each row of a 2-D ``groups`` tensor.

    Args:
        groups: ``(n, size)``.
        p: 1 or 2 (L1/L2), or ``"max"``/``inf`` for the largest magnitude.
    """
    if isinstance(p, str):
        key = p.lower()
        if key in ("l1", "1"):
            p = 1
        elif key in ("l2", "2"):
            p = 2
        elif key in ("max", "inf", "linf"):
            p = math.inf
        else:
            raise ConfigError(f"Unknown norm {p!r}; use 1 ('L1'), 2 ('L2') or 'Max'.")
    if p == 1:
        return groups.abs().sum(dim=1)
    if p == 2:
        return torch.linalg.vector_norm(groups, ord=2, dim=1)
    if p == math.inf:
        return groups.abs().amax(dim=1)
    return torch.linalg.vector_norm(groups, ord=float(p), dim=1)


@dataclass(frozen=True)
class Granularity:
    """Base class. Subclasses define :meth:`_check`, :meth:`_to_groups` and :meth:`_from_groups`."""

    name = "Granularity"

    # -- the two primitives ------------------------------------------------------------------

    def _check(self, shape: torch.Size) -> None:
        """Raise :class:`ConfigError` when the granularity cannot cut a tensor of ``shape``."""

    def _to_groups(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _from_groups(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        raise NotImplementedError

    # -- derived API -------------------------------------------------------------------------

    def check(self, shape: Sequence[int] | torch.Size) -> None:
        """Validate that ``shape`` can be cut by this granularity (raises :class:`ConfigError`)."""
        self._check(torch.Size(shape))

    def group_view(self, t: torch.Tensor, group_len: int = 1) -> torch.Tensor:
        """``t`` as ``(n_structures / group_len, structure_size * group_len)``, one row per group.

        A view when the layout allows it, otherwise a copy (never written back).
        """
        self._check(t.shape)
        g = self._to_groups(t)
        if group_len != 1:
            if group_len < 1 or g.shape[0] % group_len:
                raise ConfigError(
                    f"group_len={group_len} must divide the {g.shape[0]} {self.name} structures of a "
                    f"tensor of shape {tuple(t.shape)}."
                )
            g = g.reshape(g.shape[0] // group_len, -1)
        return g

    def num_structures(self, shape: Sequence[int] | torch.Size) -> int:
        """How many structures a tensor of ``shape`` has."""
        shape = torch.Size(shape)
        self._check(shape)
        return self._to_groups(torch.empty(shape, device="meta")).shape[0]

    def structure_size(self, shape: Sequence[int] | torch.Size) -> int:
        """Elements per structure."""
        shape = torch.Size(shape)
        return math.prod(shape) // max(self.num_structures(shape), 1)

    def group_norms(
        self, t: torch.Tensor, p: NormSpec = 1, length_normalized: bool = False, group_len: int = 1
    ) -> torch.Tensor:
        """One norm per (group of ``group_len``) structure(s).

        Args:
            t: the tensor.
            p: 1, 2, or ``"max"`` (see :func:`lp_norm`).
            length_normalized: divide by the elements per group, which makes norms of tensors
                (or groups) of different sizes comparable; with ``p=1`` it is the mean magnitude.
            group_len: adjacent structures ranked as one.
        """
        with torch.no_grad():
            groups = self.group_view(t.detach(), group_len)
            norms = lp_norm(groups, p)
            if length_normalized:
                norms = norms / groups.shape[1]
            return norms

    def expand(
        self, structure_mask: torch.Tensor, shape: Sequence[int] | torch.Size, group_len: int = 1
    ) -> torch.Tensor:
        """A full mask of ``shape`` from one value per (group of) structure(s).

        The result is a new contiguous tensor (safe to keep as a mask and to multiply in place).
        """
        shape = torch.Size(shape)
        self._check(shape)
        flat = structure_mask.reshape(-1)
        if group_len != 1:
            flat = flat.repeat_interleave(group_len)
        size = math.prod(shape) // flat.numel() if flat.numel() else 0
        groups = flat.unsqueeze(1).expand(flat.numel(), size)
        return self._from_groups(groups, shape).contiguous()

    def __str__(self) -> str:
        return self.name


def _need_dims(name: str, shape: torch.Size, dims: Sequence[int]) -> None:
    if len(shape) not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        raise ConfigError(f"{name} granularity needs a {want} tensor; got shape {tuple(shape)}.")


def _need_min_dims(name: str, shape: torch.Size, lo: int) -> None:
    if len(shape) < lo:
        raise ConfigError(f"{name} granularity needs a tensor of at least {lo} dimensions; got shape {tuple(shape)}.")


@dataclass(frozen=True)
class Element(Granularity):
    """Fine-grained: each weight is a structure."""

    name = "Element"

    def _to_groups(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, 1)

    def _from_groups(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return g.reshape(shape)


@dataclass(frozen=True)
class Filters(Granularity):
    """Output channels (dim 0): a conv filter, or a row of a Linear weight."""

    name = "Filters"

    def _check(self, shape: torch.Size) -> None:
        _need_min_dims(self.name, shape, 2)

    def _to_groups(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], -1)

    def _from_groups(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return g.reshape(shape)


@dataclass(frozen=True)
class Channels(Granularity):
    """Input channels (dim 1); on a 2-D weight, its columns (input features)."""

    name = "Channels"

    def _check(self, shape: torch.Size) -> None:
        _need_min_dims(self.name, shape, 2)

    def _to_groups(self, t: torch.Tensor) -> torch.Tensor:
        return t.transpose(0, 1).reshape(t.shape[1], -1)

    def _from_groups(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        swapped = (shape[1], shape[0], *shape[2:])
        return g.reshape(swapped).transpose(0, 1)


@dataclass(frozen=True)
class Kernels(Granularity):
    """2-D kernels: one structure per (output, input) channel pair of a conv weight."""

    name = "Kernels"

    def _check(self, shape: torch.Size) -> None:
        _need_min_dims(self.name, shape, 3)

    def _to_groups(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0] * t.shape[1], -1)

    def _from_groups(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return g.reshape(shape)


@dataclass(frozen=True)
class Rows(Granularity):
    """Rows of a 2-D weight (output features of a Linear layer)."""

    name = "Rows"

    def _check(self, shape: torch.Size) -> None:
        _need_dims(self.name, shape, (2,))

    def _to_groups(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def _from_groups(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return g.reshape(shape)


@dataclass(frozen=True)
class Cols(Granularity):
    """Columns of a 2-D weight (input features of a Linear layer)."""

    name = "Cols"

    def _check(self, shape: torch.Size) -> None:
        _need_dims(self.name, shape, (2,))

    def _to_groups(self, t: torch.Tensor) -> torch.Tensor:
        return t.t()

    def _from_groups(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return g.reshape(shape[1], shape[0]).t()


@dataclass(frozen=True)
class Layer(Granularity):
    """The whole tensor is one structure (the original's ``4D`` group)."""

    name = "Layer"

    def _to_groups(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(1, -1)

    def _from_groups(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return g.reshape(shape)


@dataclass(frozen=True)
class Blocks(Granularity):
    """Equal blocks of ``block_shape`` tiling the tensor.

    ``block_shape`` is aligned with the tensor's leading dimensions; missing trailing entries
    are 1, and extra trailing entries must be 1, so the original's ``[reps, depth, 1, 1]``
    (``reps`` filters by ``depth`` channels) also fits a 2-D ``(out, in)`` weight. Any block
    whose sides divide the tensor's sides works, e.g. ``[1, 1, 3, 1]`` (a kernel column) or
    ``[4, 4]`` tiles of a Linear weight.
    """

    block_shape: tuple[int, ...] = (1, 1, 1, 1)
    name = "Blocks"

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_shape", tuple(int(b) for b in self.block_shape))
        if not self.block_shape or any(b < 1 for b in self.block_shape):
            raise ConfigError(f"block_shape must be positive integers; got {list(self.block_shape)}.")

    def _aligned(self, shape: torch.Size) -> tuple[int, ...]:
        block = self.block_shape
        if len(block) > len(shape):
            if any(b != 1 for b in block[len(shape) :]):
                raise ConfigError(
                    f"block_shape {list(block)} has more non-1 dimensions than a tensor of shape {tuple(shape)}."
                )
            block = block[: len(shape)]
        return block + (1,) * (len(shape) - len(block))

    def _check(self, shape: torch.Size) -> None:
        block = self._aligned(shape)
        if any(s % b for s, b in zip(shape, block)):
            raise ConfigError(
                f"block_shape {list(self.block_shape)} does not tile a tensor of shape {tuple(shape)}: "
                "each block side must divide the tensor's side."
            )

    def _split_shape(self, shape: torch.Size) -> tuple[list[int], list[int], list[int]]:
        block = self._aligned(shape)
        counts = [s // b for s, b in zip(shape, block)]
        split = [x for pair in zip(counts, block) for x in pair]
        return counts, list(block), split

    def _to_groups(self, t: torch.Tensor) -> torch.Tensor:
        counts, block, split = self._split_shape(t.shape)
        k = len(counts)
        order = list(range(0, 2 * k, 2)) + list(range(1, 2 * k, 2))
        return t.reshape(split).permute(order).reshape(math.prod(counts), math.prod(block))

    def _from_groups(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        counts, block, _ = self._split_shape(shape)
        k = len(counts)
        inverse = [x for i in range(k) for x in (i, k + i)]
        return g.reshape(*counts, *block).permute(inverse).reshape(shape)


@dataclass(frozen=True)
class NM(Granularity):
    """Groups of ``m`` consecutive weights along the input dimension (dim 1); N:M keeps ``n``.

    A conv weight ``(O, I, kh, kw)`` is grouped along ``I`` at each ``(o, kh, kw)`` position
    (``I`` must be a multiple of ``m``); a Linear weight ``(O, I)`` along each row.
    """

    n: int = 2
    m: int = 4
    name = "NM"

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "n", operator.index(self.n))
            object.__setattr__(self, "m", operator.index(self.m))
        except TypeError:
            raise ConfigError(f"N:M sparsity needs integer n and m; got n={self.n!r}, m={self.m!r}.") from None
        if not 0 <= self.n <= self.m or self.m < 1:
            raise ConfigError(f"N:M sparsity needs integers 0 <= n <= m, m >= 1; got n={self.n}, m={self.m}.")

    def _check(self, shape: torch.Size) -> None:
        _need_min_dims(f"{self.n}:{self.m}", shape, 2)
        if shape[1] % self.m:
            raise ConfigError(
                f"{self.n}:{self.m} sparsity needs the input dimension (dim 1, size {shape[1]}) of a tensor of "
                f"shape {tuple(shape)} to be a multiple of {self.m}."
            )

    def _to_groups(self, t: torch.Tensor) -> torch.Tensor:
        return t.movedim(1, -1).reshape(-1, self.m)

    def _from_groups(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        moved = (shape[0], *shape[2:], shape[1])
        return g.reshape(moved).movedim(-1, 1)

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


# The original's ``group_type`` spellings, plus our ``Element`` and ``NM``.
_BY_NAME: dict[str, type[Granularity]] = {
    "Element": Element,
    "Filters": Filters,
    "3D": Filters,
    "Channels": Channels,
    "Kernels": Kernels,
    "2D": Kernels,
    "Rows": Rows,
    "Cols": Cols,
    "Blocks": Blocks,
    "Layer": Layer,
    "4D": Layer,
    "NM": NM,
}
GRANULARITY_NAMES: tuple[str, ...] = tuple(_BY_NAME)


def granularity_from_name(name: str | Granularity, **kwargs) -> Granularity:
    """The granularity the original's ``group_type`` string names.

    Args:
        name: ``'Element'``, ``'Filters'``/``'3D'``, ``'Channels'``, ``'Kernels'``/``'2D'``,
            ``'Rows'``, ``'Cols'``, ``'Blocks'``, ``'Layer'``/``'4D'``, ``'NM'``, or an N:M
            spelling such as ``'2:4'``. A :class:`Granularity` is returned unchanged.
        **kwargs: ``block_shape`` for Blocks; ``n`` and ``m`` for NM. Other keys are ignored,
            because pruner configs pass their whole ``kwargs`` dict along.

    Raises:
        ConfigError: unknown name (with the close matches) or missing/invalid arguments.
    """
    if isinstance(name, Granularity):
        return name
    if not isinstance(name, str):
        raise ConfigError(f"A granularity (group_type) must be a string; got {name!r}.")
    if ":" in name:
        n, _, m = name.partition(":")
        try:
            return NM(int(n), int(m))
        except ValueError:
            raise ConfigError(f"Bad N:M granularity {name!r}; write it like '2:4'.") from None
    cls = _BY_NAME.get(name)
    if cls is None:
        raise ConfigError(
            f"Unknown granularity (group_type) {name!r}.{did_you_mean(name, list(_BY_NAME))} "
            f"Known: {', '.join(_BY_NAME)}."
        )
    if cls is Blocks:
        if kwargs.get("block_shape") is None:
            raise ConfigError("Blocks granularity needs a block_shape, e.g. kwargs: {block_shape: [1, 4, 1, 1]}.")
        return Blocks(tuple(kwargs["block_shape"]))
    if cls is NM:
        if "n" not in kwargs or "m" not in kwargs:
            raise ConfigError("NM granularity needs n and m, e.g. n: 2, m: 4 (keep 2 of every 4 weights).")
        return NM(int(kwargs["n"]), int(kwargs["m"]))
    return cls()
