"""Tensor operations (matmul, concat, split, mean, ...) as modules.

Like :mod:`distiller.modules.eltwise`, these exist so that operations a model would otherwise call
functionally become named modules that hooks, statistics collectors and quantizers can see.
"""

from __future__ import annotations

import torch
from torch import nn


class Matmul(nn.Module):
    """``torch.matmul(a, b)``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class BatchMatmul(nn.Module):
    """``torch.bmm(a, b)`` for batches of matrices."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a, b)


class Concat(nn.Module):
    """``torch.cat(inputs, dim)``."""

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat(inputs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Stack(nn.Module):
    """``torch.stack(inputs, dim)``."""

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack(inputs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Chunk(nn.Module):
    """``torch.chunk(x, chunks, dim)``."""

    def __init__(self, chunks: int, dim: int = 0) -> None:
        super().__init__()
        self.chunks = chunks
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.chunk(x, self.chunks, dim=self.dim)

    def extra_repr(self) -> str:
        return f"chunks={self.chunks}, dim={self.dim}"


class Split(nn.Module):
    """``torch.split(x, split_size_or_sections, dim)``."""

    def __init__(self, split_size_or_sections: int | list[int], dim: int = 0) -> None:
        super().__init__()
        self.split_size_or_sections = split_size_or_sections
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(x, self.split_size_or_sections, dim=self.dim)

    def extra_repr(self) -> str:
        return f"split_size_or_sections={self.split_size_or_sections}, dim={self.dim}"


class Mean(nn.Module):
    """``torch.mean(x, dim, keepdim)``, e.g. the global average pool of MobileNet v2."""

    def __init__(self, *dim: int, keepdim: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mean(x, dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, keepdim={self.keepdim}"


class Norm(nn.Module):
    """``torch.linalg.vector_norm(x, ord, dim, keepdim)`` (the original's ``torch.norm``)."""

    def __init__(self, p: float = 2.0, dim: int | None = None, keepdim: bool = False) -> None:
        super().__init__()
        self.p = p
        self.dim = dim
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x, ord=self.p, dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"p={self.p}, dim={self.dim}, keepdim={self.keepdim}"
