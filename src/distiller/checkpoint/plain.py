"""Checking that checkpoint contents are tensors and plain data.

``torch.load(weights_only=True)`` refuses any pickled class, so a checkpoint is safe to share only
if it holds nothing but tensors, numbers, strings and containers of them. Checking at save time
turns "this checkpoint cannot be loaded" (found weeks later, by someone else) into an immediate
error naming the offending key.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from distiller.errors import CheckpointError

_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size)
_KEYS = (str, int, float, bool, type(None))


def to_plain_data(value: Any, where: str) -> Any:
    """``value`` with NumPy scalars/arrays converted to Python numbers/tensors, checked recursively.

    Tensors are detached (a saved graph would pin autograd state); tensor subclasses such as
    ``nn.Parameter`` become plain tensors. ``where`` names the value in error messages
    (e.g. ``"extras['best_top1']"``).

    Raises:
        CheckpointError: some value is an object of another class.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        return tensor if type(tensor) is torch.Tensor else tensor.as_subclass(torch.Tensor)
    if type(value) in _LEAVES:
        return value
    if type(value) in (dict, OrderedDict):
        out = type(value)()
        for k, v in value.items():
            if type(k) not in _KEYS:
                raise CheckpointError(
                    f"{where} has a key of type {type(k).__name__} ({k!r}); checkpoint dict keys must be "
                    "strings or numbers."
                )
            out[k] = to_plain_data(v, f"{where}[{k!r}]")
        return out
    if type(value) in (list, tuple):
        return type(value)(to_plain_data(v, f"{where}[{i}]") for i, v in enumerate(value))
    numpy_value = _from_numpy(value)
    if numpy_value is not None:
        return numpy_value
    raise CheckpointError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}; checkpoints hold only tensors and plain "
        "data (numbers, strings, lists, tuples, dicts), so that they load with weights_only=True. Store its "
        "state_dict() or a plain representation instead."
    )


def _from_numpy(value: Any) -> Any:
    """Python number for a NumPy scalar, tensor for a NumPy array, else None (NumPy not required)."""
    module = type(value).__module__
    if not module.startswith("numpy"):
        return None
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    if hasattr(value, "__array__"):
        return torch.from_numpy(value.copy())
    return None
