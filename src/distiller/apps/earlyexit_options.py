"""The typed early-exit options of the classifier app (``--earlyexit_*`` flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EarlyExitOptions"]


@dataclass
class EarlyExitOptions:
    """Training and evaluation settings of a model with early exits; all empty for other models.

    Attributes:
        lossweights: ``--earlyexit_lossweights``: one training-loss weight per early exit (sum < 1);
            the final classifier gets the rest.
        thresholds: ``--earlyexit_thresholds``: one per early exit; a sample leaves at the first exit
            whose score is below its threshold.
        rule: ``--earlyexit-rule``: the score, ``entropy`` (softmax entropy in nats, label-free; the
            default) or ``ce`` (the original's cross-entropy against the label).
    """

    lossweights: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    rule: str = "entropy"

    @property
    def given(self) -> bool:
        """True when any early-exit flag was set."""
        return bool(self.lossweights or self.thresholds)
