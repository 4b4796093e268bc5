"""When a policy fires: epoch windows (the original's) and step windows (new).

The original bound a policy to epochs only: either an explicit ``epochs`` list or the triple
``starting_epoch`` (inclusive), ``ending_epoch`` (exclusive), ``frequency``. Users who train by
iterations (large datasets, LLM-style runs) want the same thing in optimizer steps, so a window can
also be given as ``starting_step`` / ``ending_step`` / ``step_frequency``. A step is the global
minibatch index ``epoch * minibatches_per_epoch + minibatch_id`` (the index the original's
``mini_batch_pruning_frequency`` already uses), so it needs no counter and survives a resume.

Invalid windows raise :class:`ScheduleError` with a fix, instead of the original's bare assertions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from distiller.errors import ScheduleError

__all__ = ["Window", "make_window"]

Unit = Literal["epoch", "step"]


def _check_int(value: Any, what: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; bools and floats are rejected (YAML ``1.5``, ``true``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleError(f"{what} must be an integer, got {value!r}. Fix: write a whole number, e.g. {minimum}.")
    if value < minimum:
        raise ScheduleError(f"{what} must be >= {minimum}, got {value}. Fix: use a value >= {minimum}.")
    return value


@dataclass(frozen=True)
class Window:
    """The epochs (or steps) at which a policy fires.

    Attributes:
        unit: ``"epoch"`` or ``"step"``.
        start: first firing index (inclusive).
        end: exclusive end (for an explicit list: last element + 1, as in the original).
        frequency: period, or ``None`` for an explicit list (the original's metadata).
        points: the explicit list (sorted), or ``None`` for a periodic window.
    """

    unit: Unit
    start: int
    end: int
    frequency: int | None
    points: tuple[int, ...] | None = None

    def fires(self, index: int) -> bool:
        """Whether the policy fires at epoch/step ``index``."""
        if self.points is not None:
            return index in self.points
        assert self.frequency is not None
        return self.start <= index < self.end and (index - self.start) % self.frequency == 0

    @property
    def last(self) -> int:
        """The last index at which the policy fires.

        The original tested ``current_epoch == ending_epoch - 1`` to detect the last epoch, which
        never holds when ``frequency`` does not divide the window (e.g. 0..30 every 2): its
        ``keep_mask`` then silently did nothing. We use the real last firing.
        """
        if self.points is not None:
            return self.points[-1]
        assert self.frequency is not None
        return self.start + ((self.end - 1 - self.start) // self.frequency) * self.frequency

    def is_last(self, index: int) -> bool:
        return index == self.last

    def firings(self, limit: int | None = None) -> list[int]:
        """All firing indices (below ``limit`` when given)."""
        if self.points is not None:
            pts = list(self.points)
        else:
            assert self.frequency is not None
            pts = list(range(self.start, self.end, self.frequency))
        return [p for p in pts if limit is None or p < limit]

    def meta(self) -> dict[str, Any]:
        """The policy metadata of the original (``starting_epoch``, ``ending_epoch``, ``frequency``).

        Step windows use the ``*_step`` keys of the contract instead.
        """
        if self.unit == "epoch":
            return {"starting_epoch": self.start, "ending_epoch": self.end, "frequency": self.frequency}
        return {"starting_step": self.start, "ending_step": self.end, "step_frequency": self.frequency}

    def describe(self) -> str:
        """Human-readable: ``epochs 0-28 every 2 (15 times, until 30)`` or ``epochs [30]``."""
        plural = f"{self.unit}s"
        if self.points is not None:
            return f"{plural} {list(self.points)}"
        n = len(range(self.start, self.end, self.frequency or 1))
        if n == 1:
            return f"{self.unit} {self.start} (window {self.start}..{self.end}, end exclusive)"
        every = "" if self.frequency == 1 else f" every {self.frequency}"
        until = "" if self.last == self.end - 1 else f", until {self.end}"
        return f"{plural} {self.start}-{self.last}{every} ({n} times{until})"


def _explicit(points: Iterable[Any], unit: Unit, key: str) -> Window:
    if isinstance(points, (str, bytes)) or not isinstance(points, Iterable):
        raise ScheduleError(f"'{key}' must be a list of {unit}s, got {points!r}. Fix: e.g. {key}: [0, 2, 4].")
    values = [_check_int(p, f"each element of '{key}'", 0) for p in points]
    if not values:
        raise ScheduleError(f"'{key}' is empty, so the policy would never fire. Fix: list at least one {unit}.")
    if len(set(values)) != len(values):
        dups = sorted({v for v in values if values.count(v) > 1})
        raise ScheduleError(f"'{key}' lists {dups} more than once. Fix: list each {unit} once.")
    pts = tuple(sorted(values))
    return Window(unit, pts[0], pts[-1] + 1, None, pts)


def _periodic(start: Any, end: Any, frequency: Any, unit: Unit, keys: Sequence[str]) -> Window:
    k_start, k_end, k_freq = keys
    start = _check_int(start, f"'{k_start}'", 0)
    end = _check_int(end, f"'{k_end}'", 0)
    frequency = _check_int(frequency, f"'{k_freq}'", 1)
    if end <= start:
        raise ScheduleError(
            f"'{k_end}' ({end}) must be greater than '{k_start}' ({start}): the end is exclusive. "
            f"Fix: to fire only at {unit} {start}, set {k_end}: {start + 1}."
        )
    if frequency > end - start:
        raise ScheduleError(
            f"'{k_freq}' ({frequency}) is larger than the window {start}..{end} ({end - start} {unit}s). "
            f"Fix: use {k_freq} <= {end - start}, or widen the window."
        )
    return Window(unit, start, end, frequency)


def make_window(
    epochs: Iterable[int] | None = None,
    starting_epoch: int | None = None,
    ending_epoch: int | None = None,
    frequency: int | None = 1,
    starting_step: int | None = None,
    ending_step: int | None = None,
    step_frequency: int | None = None,
) -> Window:
    """Validate the timing arguments of ``add_policy`` and build a :class:`Window`.

    Exactly one form is allowed: an ``epochs`` list, an epoch window (``starting_epoch`` and
    ``ending_epoch``, optional ``frequency``), or a step window (``ending_step``, optional
    ``starting_step`` = 0 and ``step_frequency`` = 1).

    Raises:
        ScheduleError: no timing, mixed forms, or invalid values.
    """
    has_list = epochs is not None
    has_epoch_window = starting_epoch is not None or ending_epoch is not None
    has_steps = starting_step is not None or ending_step is not None or step_frequency is not None
    forms = [
        n
        for n, present in (("epochs", has_list), ("an epoch window", has_epoch_window), ("a step window", has_steps))
        if present
    ]
    if len(forms) > 1:
        raise ScheduleError(
            f"The policy timing mixes {' and '.join(forms)}. Fix: give either 'epochs: [...]', or "
            "'starting_epoch'/'ending_epoch'/'frequency', or 'starting_step'/'ending_step'/'step_frequency'."
        )
    if not forms:
        raise ScheduleError(
            "The policy has no timing. Fix: add 'epochs: [...]', or 'starting_epoch', 'ending_epoch' and "
            "'frequency' (or 'starting_step'/'ending_step' for step windows)."
        )
    if has_list:
        if frequency not in (None, 1):
            raise ScheduleError(
                "'frequency' applies to an epoch window, not to an explicit 'epochs' list. "
                "Fix: drop 'frequency', or replace 'epochs' by 'starting_epoch'/'ending_epoch'."
            )
        return _explicit(epochs, "epoch", "epochs")  # type: ignore[arg-type]
    if has_epoch_window:
        missing = [k for k, v in (("starting_epoch", starting_epoch), ("ending_epoch", ending_epoch)) if v is None]
        if missing:
            raise ScheduleError(
                f"The epoch window lacks {' and '.join(repr(m) for m in missing)}. "
                "Fix: give both 'starting_epoch' and 'ending_epoch' (exclusive), or an 'epochs' list."
            )
        return _periodic(
            starting_epoch,
            ending_epoch,
            1 if frequency is None else frequency,
            "epoch",
            ("starting_epoch", "ending_epoch", "frequency"),
        )
    if ending_step is None:
        raise ScheduleError(
            "The step window lacks 'ending_step'. Fix: give 'ending_step' (exclusive), and optionally "
            "'starting_step' (default 0) and 'step_frequency' (default 1)."
        )
    return _periodic(
        0 if starting_step is None else starting_step,
        ending_step,
        1 if step_frequency is None else step_frequency,
        "step",
        ("starting_step", "ending_step", "step_frequency"),
    )
