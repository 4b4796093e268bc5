"""Keep scheduler state loadable with ``torch.load(weights_only=True)``.

Checkpoints hold only tensors and plain data (DESIGN.md, "Checkpoints"). Component state dicts
mostly are plain already, but some carry objects a safe loader rejects (a PyTorch LR scheduler's
state may hold a callable or a weak reference). Those entries are dropped, with a debug log: they
are rebuilt from the schedule anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["plain_state"]

logger = logging.getLogger(__name__)

_DROP = object()


def _plain(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                logger.debug("scheduler state: dropping non-plain key %r at %s", k, where)
                continue
            pv = _plain(v, f"{where}.{k}")
            if pv is not _DROP:
                out[k] = pv
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if any(v is _DROP for v in items):
            logger.debug("scheduler state: dropping %s (holds non-plain items)", where)
            return _DROP
        return items if isinstance(value, list) else tuple(items)
    logger.debug("scheduler state: dropping %s of type %s", where, type(value).__name__)
    return _DROP


def plain_state(state: Mapping[str, Any] | None) -> dict[str, Any]:
    """``state`` with only tensors (on CPU), numbers, strings, None and containers of those."""
    if not state:
        return {}
    out = _plain(state, "state")
    return out if isinstance(out, dict) else {}
