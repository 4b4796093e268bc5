"""The resolved plan of a schedule: which policy fires when, on which tensors.

``distiller validate SCHEDULE.yaml -a ARCH`` prints :meth:`SchedulePlan.describe`; tests and tools
query :meth:`SchedulePlan.fires_at`. The plan is built from the same objects a training run uses
(the scheduler is attached), so what it says is what will happen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distiller.config.schema import ComponentSpec, PolicySpec
from distiller.scheduler import CompressionScheduler
from distiller.scheduler.windows import Window

__all__ = ["PlannedPolicy", "SchedulePlan", "component_classes", "policy_tensors"]

_NAME_KEYS = ("weights", "levels", "thresholds", "sensitivities", "reg_regims")
_MAX_TIMELINE_LINES = 40


def policy_tensors(component: ComponentSpec, policy_args: Mapping[str, Any] | None = None) -> list[str]:
    """The parameter names a pruner/regularizer acts on (``'*'`` = every other parameter)."""
    args = dict(component.args)
    if policy_args and isinstance(policy_args.get("levels"), Mapping):
        args["levels"] = policy_args["levels"]
    names: list[str] = []
    for key in _NAME_KEYS:
        value = args.get(key)
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, Mapping)):
            for name in value:
                label = "* (every other parameter)" if name == "*" else str(name)
                if label not in names:
                    names.append(label)
    return names


@dataclass
class PlannedPolicy:
    """One scheduled policy, resolved."""

    index: int
    kind: str
    instance_name: str
    class_name: str
    window: Window
    tensors: list[str]
    args: dict[str, Any]
    line: int | None = None

    @classmethod
    def from_spec(cls, ps: PolicySpec, component: ComponentSpec, line: int | None) -> PlannedPolicy:
        tensors = policy_tensors(component, ps.args) if ps.kind in ("pruner", "regularizer") else []
        return cls(
            ps.index, ps.kind, ps.instance_name, component.class_name, ps.window, tensors, dict(ps.args or {}), line
        )

    def describe(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        head = f"[{self.index}] {self.kind} {self.instance_name!r} ({self.class_name}){where}: {self.window.describe()}"
        lines = [head]
        if self.args:
            lines.append("      args: " + ", ".join(f"{k}={v!r}" for k, v in self.args.items()))
        if self.tensors:
            lines.append(f"      tensors ({len(self.tensors)}): " + ", ".join(self.tensors))
        return "\n".join(lines)


@dataclass
class SchedulePlan:
    """What a schedule will do, and the scheduler that will do it.

    Attributes:
        source: the file (or ``"<dict>"``) the schedule came from.
        policies: the policies in file order (LR policies fire last within an epoch).
        components: ``{section: {instance name: class name}}``.
        warnings: what the loader tolerated (unknown sections, unused components, ...).
        scheduler: the built scheduler.
    """

    source: str
    policies: list[PlannedPolicy]
    components: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    scheduler: CompressionScheduler | None = None

    def fires_at(self, epoch: int) -> list[PlannedPolicy]:
        """The epoch-window policies firing at ``epoch``, in firing order (LR policies last)."""
        hits = [p for p in self.policies if p.window.unit == "epoch" and p.window.fires(epoch)]
        return [p for p in hits if p.kind != "lr_scheduler"] + [p for p in hits if p.kind == "lr_scheduler"]

    def last_epoch(self) -> int:
        """One past the last epoch at which any epoch-window policy fires (0 if none)."""
        return max((p.window.end for p in self.policies if p.window.unit == "epoch"), default=0)

    def timeline(self, num_epochs: int | None = None) -> list[str]:
        """Epochs grouped by the policies firing in them: ``epochs 0-28 every 2: low_pruner, lr``.

        Epochs with the same firing list are split into arithmetic runs, so periodic windows
        read as one line each.
        """
        end = self.last_epoch() if num_epochs is None else num_epochs
        by_set: dict[tuple[str, ...], list[int]] = {}
        for epoch in range(end):
            names = tuple(p.instance_name for p in self.fires_at(epoch))
            if names:
                by_set.setdefault(names, []).append(epoch)
        runs: list[tuple[int, int, int, tuple[str, ...]]] = []
        for names, epochs in by_set.items():
            i = 0
            while i < len(epochs):
                j = i + 1
                step = epochs[j] - epochs[i] if j < len(epochs) else 1
                while j < len(epochs) and epochs[j] - epochs[j - 1] == step:
                    j += 1
                runs.append((epochs[i], epochs[j - 1], step, names))
                i = j
        out = []
        for first, last, step, names in sorted(runs):
            span = (
                f"epoch {first}" if first == last else f"epochs {first}-{last}" + (f" every {step}" if step > 1 else "")
            )
            out.append(f"  {span}: {', '.join(names)}")
        if len(out) > _MAX_TIMELINE_LINES:
            out = out[:_MAX_TIMELINE_LINES] + [f"  ... ({len(out) - _MAX_TIMELINE_LINES} more lines)"]
        return out

    def describe(self, num_epochs: int | None = None) -> str:
        """The plan as text: components, each policy (window, args, tensors), and the epoch timeline."""
        lines = [f"Schedule {self.source}: {len(self.policies)} polic{'y' if len(self.policies) == 1 else 'ies'}"]
        for section, items in self.components.items():
            if items:
                lines.append(f"  {section}: " + ", ".join(f"{n} ({c})" for n, c in items.items()))
        lines.append("Policies (in file order):")
        lines += ["  " + p.describe() for p in self.policies] or ["  (none)"]
        timeline = self.timeline(num_epochs)
        if timeline:
            lines.append("Epoch timeline (firing order):")
            lines += timeline
        steps = [p for p in self.policies if p.window.unit == "step"]
        if steps:
            lines.append("Step windows: " + "; ".join(f"{p.instance_name} {p.window.describe()}" for p in steps))
        if self.warnings:
            lines.append("Warnings:")
            lines += [f"  {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def component_classes(components: Mapping[str, Mapping[str, ComponentSpec]]) -> dict[str, dict[str, str]]:
    return {section: {n: c.class_name for n, c in items.items()} for section, items in components.items() if items}
