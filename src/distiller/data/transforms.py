"""Transform pipelines shared by the built-in datasets.

All pipelines take a uint8 (C, H, W) tensor or a PIL image and return a plain float tensor
(``ToPureTensor``), so batches are ordinary tensors, not ``tv_tensors`` subclasses. torchvision is
imported when a pipeline is built, not when ``distiller.data`` is imported (it costs seconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torchvision.transforms import v2


def normalized(mean: Sequence[float], std: Sequence[float], augment: Sequence[object] = ()) -> v2.Compose:
    """``augment`` (on uint8 tensors or PIL images), then scale to [0, 1] and normalize."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            *augment,
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
            v2.ToPureTensor(),
        ]
    )
