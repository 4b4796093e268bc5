"""The typed options of greedy filter pruning (``--greedy*``), and which other modes they exclude."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from distiller.apps.search_modes import GREEDY, other_modes_in, reject_combinations
from distiller.errors import ConfigError

if TYPE_CHECKING:
    from distiller.apps.options import ClassifierOptions

__all__ = ["GreedyOptions", "check_greedy_options"]


@dataclass
class GreedyOptions:
    """Defaults are the original's; like there, ``--greedy`` needs an explicit target density."""

    enabled: bool = False  # --greedy
    ft_epochs: int = 1  # --greedy-ft-epochs: fine-tuning epochs per candidate (scaled by the policy)
    target_density: float | None = None  # --greedy-target-density: fraction of the conv MACs to keep
    pruning_step: float = 0.10  # --greedy-pruning-step: fraction of a layer's filters removed per step
    finetuning_policy: str = "constant"  # --greedy-finetuning-policy: constant | linear-grow

    def validate(self) -> None:
        """Check the values (not the combination with other modes) when ``--greedy`` is on.

        Raises:
            ConfigError: a missing target density or a value out of range; the message names the flag.
        """
        if not self.enabled:
            return
        from distiller.pruning.greedy import FINETUNING_POLICIES, check_greedy_arguments  # keep options light

        if self.target_density is None:
            raise ConfigError(
                "--greedy needs --greedy-target-density: the fraction of the convolutions' MACs to keep (e.g. 0.5)."
            )
        check_greedy_arguments(self.target_density, self.pruning_step)
        if isinstance(self.ft_epochs, bool) or not isinstance(self.ft_epochs, int) or self.ft_epochs < 0:
            raise ConfigError(
                f"--greedy-ft-epochs is a whole number of epochs (0: no fine-tuning), got {self.ft_epochs!r}."
            )
        if self.finetuning_policy not in FINETUNING_POLICIES:
            raise ConfigError(
                f"--greedy-finetuning-policy must be one of {', '.join(FINETUNING_POLICIES)}, "
                f"got {self.finetuning_policy!r}."
            )


def check_greedy_options(opts: ClassifierOptions) -> None:
    """Validate ``opts.greedy`` and its combination with the other modes of ``opts``.

    Raises:
        ConfigError: see :meth:`GreedyOptions.validate` and :func:`~distiller.apps.search_modes.reject_combinations`.
    """
    if not opts.greedy.enabled:
        return
    opts.greedy.validate()
    reject_combinations(GREEDY, other_modes_in(opts, GREEDY))
