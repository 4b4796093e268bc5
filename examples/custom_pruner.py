"""A user-defined pruner, registered so that YAML schedules and ``distiller.pruning.prune`` can use it.

Run it::

    python examples/custom_pruner.py

The pruner below keeps, in every row of a weight matrix (every filter of a conv), only the
``keep`` largest-magnitude weights: a per-output "top-k" pattern. It subclasses
:class:`distiller.pruning.Pruner`, which handles the ``weights`` list (a list or one string,
``module.`` names accepted), the mask bookkeeping, and ignoring parameters it was not configured
for. It only says how to compute a mask. Registering it with ``@register_pruner`` makes its class
name usable as ``class: TopKPerRowPruner`` in a schedule, exactly like a built-in pruner::

    pruners:
      topk:
        class: TopKPerRowPruner
        keep: 4
        weights: [fc1.weight, fc2.weight]

A pruner does not have to subclass ``Pruner``: any object with ``name`` and
``set_param_mask(param, param_name, zeros_mask_dict, meta)`` works (the original Distiller's protocol).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from distiller.pruning import Pruner, prune, register_pruner
from distiller.pruning.rates import ConstantRate
from distiller.sparsity.metrics import sparsity


@register_pruner
class TopKPerRowPruner(Pruner):
    """Keep the ``keep`` largest magnitudes of each output row (filter); prune the rest.

    Args:
        name: instance name (the key under ``pruners:`` in a schedule).
        keep: weights kept per row.
        weights: the parameters to prune.
    """

    def __init__(self, name: str, keep: int, weights: str | Iterable[str]) -> None:
        super().__init__(name, weights)
        self.keep = int(keep)
        self.rate = ConstantRate(self.keep)  # the "target" handed to make_mask

    def make_mask(self, param, param_name, target, current_mask, meta):
        rows = param.detach().abs().reshape(param.shape[0], -1)
        k = min(int(target), rows.shape[1])
        mask = torch.zeros_like(rows)
        mask.scatter_(1, rows.topk(k, dim=1).indices, 1.0)
        return mask.reshape(param.shape)


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(64, 32))
    model.add_module("relu", nn.ReLU())
    model.add_module("fc2", nn.Linear(32, 10))

    # Built from a config dict through the registry, as a YAML schedule would be.
    masks = prune(model, {"class": "TopKPerRowPruner", "keep": 8, "weights": ["fc1.weight", "fc2.weight"]})

    for name, param in model.named_parameters():
        if masks[name].mask is not None:
            print(f"{name:12s} {tuple(param.shape)!s:10s} sparsity {100 * sparsity(param):6.2f}%")
    # Keep `masks` and call masks.apply(model, is_forward=False) after each optimizer step while
    # fine-tuning, so the pruned weights stay zero.


if __name__ == "__main__":
    main()
