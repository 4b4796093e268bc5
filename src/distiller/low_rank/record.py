"""Decompositions as plain data: recorded on the model, saved in checkpoints, replayed on load.

A checkpoint of a factorized model holds ``fc1.0.weight`` and ``fc1.1.weight`` where the model that
the classifier app builds from ``arch`` has ``fc1.weight``. As with thinning plans, the checkpoint
therefore stores what was done (``{"module": "fc1", "method": "linear", "rank": 40, ...}``) and
loading replays it on the fresh model before the weights are loaded. Replaying builds only the
shapes; the SVD is not recomputed, since the saved (possibly fine-tuned) factors overwrite it.

Thinning and factorization can follow each other in either order (a thinned layer factorized, or a
factorized layer thinned), and each rewrites the tensor names or shapes the other refers to. Each
record therefore notes how many thinning plans the model had when it was made
(``after_thinning_plans``), and loading interleaves the two in the order they happened.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from distiller.errors import ConfigError
from distiller.low_rank.conv import conv_structure
from distiller.low_rank.cost import METHODS, check_method
from distiller.low_rank.linear import linear_structure
from distiller.low_rank.module import FactorizedLayer
from distiller.naming import normalize_module_name

__all__ = [
    "RECORDS_ATTR",
    "DecompositionRecord",
    "applied_decompositions",
    "record_decomposition",
    "replace_module",
    "replay_decompositions",
]

RECORDS_ATTR = "low_rank_decompositions"
"""Model attribute listing the decompositions applied to it, oldest first."""


@dataclass(frozen=True)
class DecompositionRecord:
    """One layer replaced by a rank-``rank`` factorization.

    Attributes:
        module: the canonical module name (``fc1``).
        method: ``linear``, ``channel`` or ``spatial``.
        rank: the rank of the factorization.
        after_thinning_plans: how many thinning plans had been applied to the model before.
    """

    module: str
    method: str
    rank: int
    after_thinning_plans: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain strings and ints: safe in a checkpoint read with ``weights_only=True``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecompositionRecord:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: malformed data (names the field).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"A low-rank record must be a dict; got {type(data).__name__}.")
        module, method, rank = data.get("module"), data.get("method"), data.get("rank")
        after = data.get("after_thinning_plans", 0)
        if not isinstance(module, str) or not module:
            raise ConfigError(f"A low-rank record needs a 'module' name; got {module!r}.")
        if method not in METHODS:
            raise ConfigError(f"Low-rank record of {module!r}: 'method' must be one of {METHODS}; got {method!r}.")
        for key, value, least in (("rank", rank, 1), ("after_thinning_plans", after, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(
                    f"Low-rank record of {module!r}: {key!r} must be an integer >= {least}; got {value!r}."
                )
        return cls(normalize_module_name(module), str(method), int(rank), int(after))


def applied_decompositions(model: nn.Module) -> list[DecompositionRecord]:
    """The decompositions applied to ``model`` (or to the model DataParallel/DDP wraps), oldest first."""
    for candidate in (model, getattr(model, "module", None)):
        records = getattr(candidate, RECORDS_ATTR, None)
        if isinstance(records, list) and records:
            return list(records)
    return []


def record_decomposition(model: nn.Module, record: DecompositionRecord) -> None:
    """Append ``record`` to the model's list, so a checkpoint saved later can rebuild the shapes."""
    records = getattr(model, RECORDS_ATTR, None)
    if not isinstance(records, list):
        records = []
        setattr(model, RECORDS_ATTR, records)
    records.append(record)


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` at the dotted ``name`` (as ``named_modules()`` spells it) of ``model``.

    Assigning an existing child keeps its place in ``_modules``, so ``named_parameters()`` keeps
    the layer where it was: optimizers rebuilt on ``model.parameters()`` list parameters in the
    same order as the one updated in place (which resuming from a checkpoint relies on).
    """
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _structure(layer: nn.Module, method: str, rank: int) -> FactorizedLayer:
    method = check_method(layer, method)
    return linear_structure(layer, rank) if method == "linear" else conv_structure(layer, method, rank)


def replay_decompositions(
    model: nn.Module, records: Sequence[DecompositionRecord | Mapping[str, Any]], *, record: bool = True
) -> list[DecompositionRecord]:
    """Rebuild the shapes of factorized layers on a model built from its architecture.

    Layers already factorized with the same method and rank are left as they are (replaying twice
    is harmless). The new layers' weights are uninitialized: load the state dict next.

    Args:
        model: the model (wrapped or not).
        records: :class:`DecompositionRecord` or their :meth:`~DecompositionRecord.to_dict` dicts.
        record: append the replayed records to the model's list (for a later checkpoint).

    Raises:
        ConfigError: a malformed record, a module the model lacks, a layer that cannot take the
            recorded factorization.
    """
    done = []
    for item in records:
        rec = item if isinstance(item, DecompositionRecord) else DecompositionRecord.from_dict(item)
        modules = {normalize_module_name(n): (n, m) for n, m in model.named_modules() if n}
        if rec.module not in modules:
            raise ConfigError(f"The model has no module {rec.module!r} to factorize (method {rec.method}).")
        real_name, layer = modules[rec.module]
        if isinstance(layer, FactorizedLayer):
            if (layer.method, layer.rank) != (rec.method, rec.rank):
                raise ConfigError(
                    f"{rec.module!r} is already factorized with method {layer.method}, rank {layer.rank}; "
                    f"the record asks for method {rec.method}, rank {rec.rank}."
                )
            continue
        new = _structure(layer, rec.method, rec.rank)
        replace_module(model, real_name, new)
        if record:
            record_decomposition(model, rec)
        done.append(rec)
    return done
