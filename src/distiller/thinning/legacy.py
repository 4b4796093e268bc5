"""The original Distiller's ``ThinningRecipe``, so that its checkpoints can be read safely.

Original checkpoints pickle ``distiller.thinning.ThinningRecipe`` namedtuples. The ``weights_only``
unpickler finds an allowlisted class by the string ``f"{cls.__module__}.{cls.__qualname__}"``, so this
stand-in must carry exactly that module and name. Our package happens to be called ``distiller`` too,
and :mod:`distiller.thinning` re-exports the class, so the dotted path is also real.
It is only ever built by the unpickler and immediately converted to a
:class:`~distiller.thinning.plan.ThinningPlan`; nothing else uses it.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ThinningRecipe(NamedTuple):
    """``modules``: {module name: {attr: value or (dim, index tensor)}};
    ``parameters``: {param name: [(dim, index tensor) or (dim, index tensor, view, reshape)]}."""

    modules: dict[str, dict[str, Any]]
    parameters: dict[str, list[tuple[Any, ...]]]


ThinningRecipe.__module__ = "distiller.thinning"
ThinningRecipe.__qualname__ = "ThinningRecipe"

LEGACY_RECIPE_PATH = "distiller.thinning.ThinningRecipe"
"""The global name under which original checkpoints refer to the recipe class."""
