"""What to factorize: the ``layers`` mapping of the API and of the YAML extension, checked up front.

``{name: rank}``, ``{name: {rank: k}}``, ``{name: {energy: f}}``, optionally with ``method``
(``channel``/``spatial`` for convolutions) and ``split`` (where the singular values go). Names are
module names as ``model.named_modules()`` spells them, with or without DataParallel's ``module.``.
Everything that can be checked without the SVD is checked before any layer is replaced, so a typo
in the third layer does not leave the model half factorized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from distiller.errors import ConfigError
from distiller.low_rank.cost import check_method, full_rank
from distiller.low_rank.module import FactorizedLayer
from distiller.low_rank.svd import check_energy, check_rank, check_split
from distiller.naming import normalize_module_name
from distiller.registry import did_you_mean

__all__ = ["LayerSpec", "parse_layers", "resolve_layers"]

_KEYS = ("rank", "energy", "method", "split")


@dataclass(frozen=True)
class LayerSpec:
    """One layer to factorize: exactly one of ``rank`` and ``energy``; ``method`` None = default."""

    name: str
    rank: int | None = None
    energy: float | None = None
    method: str | None = None
    split: str = "sqrt"

    def entry(self) -> dict[str, Any]:
        """The spec as a ``layers`` value (``{rank: k, split: s}``, ...), for :func:`parse_layers` again."""
        out: dict[str, Any] = {"rank": self.rank} if self.rank is not None else {"energy": self.energy}
        if self.method is not None:
            out["method"] = self.method
        out["split"] = self.split
        return out


def _parse_one(name: str, value: Any, key: str, split: str) -> LayerSpec:
    where = f"{key}.{name}"
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        return LayerSpec(normalize_module_name(name), rank=check_rank(value, None, where), split=split)
    if isinstance(value, float):
        raise ConfigError(
            f"{where} is {value!r}: a bare number is a rank (an integer). For a share of the energy write "
            f"'{name}: {{energy: {value}}}'."
        )
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where} must be a rank (an integer) or a mapping with 'rank' or 'energy'; got {value!r}. "
            f"Write e.g. '{name}: {{rank: 40}}' or '{name}: {{energy: 0.9}}'."
        )
    for k in value:
        if k not in _KEYS:
            raise ConfigError(
                f"{where} has the unknown key {k!r}.{did_you_mean(str(k), list(_KEYS))} Accepted: {', '.join(_KEYS)}."
            )
    rank, energy = value.get("rank"), value.get("energy")
    if (rank is None) == (energy is None):
        raise ConfigError(
            f"{where} needs exactly one of 'rank' (singular values to keep) and 'energy' (a fraction in (0, 1])."
        )
    if rank is not None:
        rank = check_rank(rank, None, f"{where}.rank")
    if energy is not None:
        energy = check_energy(energy, f"{where}.energy")
    method = value.get("method")
    if method is not None and not isinstance(method, str):
        raise ConfigError(f"{where}.method must be a string (linear, channel or spatial); got {method!r}.")
    split = check_split(value.get("split", split), f"{where}.split")
    return LayerSpec(normalize_module_name(name), rank, energy, method, split)


def parse_layers(layers: Mapping[str, Any] | None, key: str = "layers", split: str = "sqrt") -> list[LayerSpec]:
    """The checked specs of a ``layers`` mapping (order kept).

    Args:
        layers: ``{module name: rank | {rank: k} | {energy: f} | {..., method: m, split: s}}``.
        key: how the mapping is called in messages (``layers``).
        split: the default ``split`` of layers that give none.

    Raises:
        ConfigError: not a non-empty mapping, a malformed entry, a name given twice (with and
            without ``module.``); the message names the entry.
    """
    check_split(split)
    if not isinstance(layers, Mapping) or not layers:
        raise ConfigError(
            f"{key} must be a non-empty mapping of module names to ranks; got {layers!r}. "
            "Write e.g. {'fc1': {'rank': 40}}."
        )
    specs: list[LayerSpec] = []
    for name, value in layers.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key} keys must be module names; got {name!r}.")
        spec = _parse_one(name, value, key, split)
        if any(s.name == spec.name for s in specs):
            raise ConfigError(f"{key} names the layer {spec.name!r} twice; give it once.")
        specs.append(spec)
    return specs


def resolve_layers(model: nn.Module, specs: list[LayerSpec], key: str = "layers") -> dict[str, tuple[str, nn.Module]]:
    """``{canonical name: (name in model, module)}`` for every spec, checked against the model.

    Checks that each layer exists, is a Linear or ungrouped Conv2d not factorized yet, that the
    method fits it and that a given rank is at most its full rank.

    Raises:
        ConfigError: any of those fails; the message names the layer and the fix.
    """
    modules = {normalize_module_name(n): (n, m) for n, m in model.named_modules() if n}
    resolved: dict[str, tuple[str, nn.Module]] = {}
    for spec in specs:
        where = f"{key}.{spec.name}"
        if spec.name not in modules:
            candidates = [n for n, (_, m) in modules.items() if isinstance(m, (nn.Linear, nn.Conv2d))]
            raise ConfigError(
                f"{where}: the model has no module {spec.name!r}.{did_you_mean(spec.name, candidates)} "
                f"Name a Linear or Conv2d layer as model.named_modules() spells it."
            )
        real_name, module = modules[spec.name]
        if isinstance(module, FactorizedLayer):
            raise ConfigError(
                f"{where}: {spec.name!r} is already factorized (method {module.method}, rank {module.rank}); "
                "remove it from the list, or factorize its parts by their own names."
            )
        method = check_method(module, spec.method, where)
        if spec.rank is not None:
            check_rank(spec.rank, full_rank(module, method), f"{where}.rank")
        resolved[spec.name] = (real_name, module)
    return resolved
