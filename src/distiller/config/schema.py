"""The schedule schema (reference §2): structure checks, before anything is built.

Top level (all optional, order free)::

    version: 1                      # ignored, as in the original
    pruners:       {name: {class: ..., <constructor args>}}
    regularizers:  {name: {class: ..., ...}}
    quantizers:    {name: {class: ..., ...}}      # at most one
    lr_schedulers: {name: {class: ..., ...}}
    extensions:    {name: {class: ..., ...}}
    distillation:  {name: {class: KnowledgeDistillation, teacher_arch: ..., ...}}   # new
    policies:
      - pruner: {instance_name: name, args: {...}}   # or regularizer/quantizer/lr_scheduler/
        starting_epoch: 0                            #    extension/distillation
        ending_epoch: 30                             # exclusive
        frequency: 2                                 # or `epochs: [..]`, or the step keys

Unknown top-level sections are ignored, as in the original (AMC files carry ``network:``), but
with a warning, so a typo such as ``pruner:`` is visible. Inside sections and policies, unknown
keys are errors: the original ignored a misspelled ``frequncy`` or ``keep_masks`` silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distiller.config.yaml_source import YamlPath, YamlSource
from distiller.errors import ScheduleError
from distiller.registry import close_matches, did_you_mean
from distiller.scheduler.windows import Window, make_window

__all__ = [
    "KIND_OF_SECTION",
    "SECTIONS",
    "TIMING_KEYS",
    "ComponentSpec",
    "PolicySpec",
    "ScheduleSpec",
    "parse_schedule",
]

SECTIONS = ("pruners", "regularizers", "quantizers", "lr_schedulers", "extensions", "distillation")
KIND_OF_SECTION = {
    "pruners": "pruner",
    "regularizers": "regularizer",
    "quantizers": "quantizer",
    "lr_schedulers": "lr_scheduler",
    "extensions": "extension",
    "distillation": "distillation",
}
SECTION_OF_KIND = {kind: section for section, kind in KIND_OF_SECTION.items()}
TOP_LEVEL = ("version", *SECTIONS, "policies")
TIMING_KEYS = (
    "epochs",
    "starting_epoch",
    "ending_epoch",
    "frequency",
    "starting_step",
    "ending_step",
    "step_frequency",
)
POLICY_REF_KEYS = ("instance_name", "args")

_TIMING_FIX = (
    "give 'starting_epoch' and 'ending_epoch' (exclusive) and optionally 'frequency', or an 'epochs' list, "
    "or 'starting_step'/'ending_step'/'step_frequency'."
)


@dataclass
class ComponentSpec:
    """One named component of a section (``pruners.low``), before it is built."""

    section: str
    name: str
    class_name: str
    args: dict[str, Any]
    path: YamlPath

    @property
    def kind(self) -> str:
        return KIND_OF_SECTION[self.section]


@dataclass
class PolicySpec:
    """One entry of ``policies``: which component, its policy ``args`` and its window."""

    index: int
    kind: str
    instance_name: str
    args: dict[str, Any] | None
    timing: dict[str, Any]
    window: Window
    path: YamlPath

    @property
    def section(self) -> str:
        return SECTION_OF_KIND[self.kind]


@dataclass
class ScheduleSpec:
    """A structurally valid schedule: components by section, policies in file order."""

    source: YamlSource
    components: dict[str, dict[str, ComponentSpec]] = field(default_factory=dict)
    policies: list[PolicySpec] = field(default_factory=list)
    has_policies: bool = False


def _name(key: Any) -> str | None:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        return None
    return str(key)


def _parse_section(source: YamlSource, section: str, value: Any) -> dict[str, ComponentSpec]:
    kind = KIND_OF_SECTION[section]
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise source.error(
            (section,),
            f"'{section}' must map instance names to their settings, got {type(value).__name__}.",
            f"write e.g.\n  {section}:\n    my_{kind}:\n      class: <ClassName>\n      <argument>: <value>",
        )
    specs: dict[str, ComponentSpec] = {}
    for key, body in value.items():
        name = _name(key)
        path = (section, key)
        if name is None:
            raise source.error(path, f"instance name {key!r} is not a name.", "use a word such as 'low_pruner'.")
        if not isinstance(body, Mapping):
            raise source.error(
                path,
                f"{kind} {name!r} must be a map with a 'class' key, got {body!r}.",
                f"write\n  {name}:\n    class: <ClassName>\n    <argument>: <value>",
            )
        class_name = body.get("class")
        if not isinstance(class_name, str) or not class_name:
            raise source.error(
                path,
                f"{kind} {name!r} has no 'class' (got {class_name!r}).",
                f"add 'class: <ClassName>' (`distiller list {kind}s` shows the names).",
            )
        args = {}
        for arg, v in body.items():
            if arg == "class":
                continue
            if not isinstance(arg, str):
                raise source.error((*path, arg), f"argument name {arg!r} is not a word.", "use the argument's name.")
            args[arg] = v
        specs[name] = ComponentSpec(section, name, class_name, args, path)
    return specs


def _parse_policy(
    source: YamlSource, index: int, item: Any, components: dict[str, dict[str, ComponentSpec]]
) -> PolicySpec:
    path: YamlPath = ("policies", index)
    kinds = list(SECTION_OF_KIND)
    if not isinstance(item, Mapping):
        raise source.error(
            path,
            f"a policy must be a map, got {item!r}.",
            f"start the entry with one of {', '.join(kinds)}, e.g. '- pruner: {{instance_name: my_pruner}}'.",
            ScheduleError,
        )
    present = [k for k in kinds if k in item]
    unknown = [k for k in item if k not in kinds and k not in TIMING_KEYS]
    if unknown:
        key = unknown[0]
        hint = did_you_mean(str(key), kinds + list(TIMING_KEYS))
        raise source.error(
            (*path, key),
            f"unknown key {key!r} in a policy.{hint}",
            f"a policy has one of {', '.join(kinds)} plus timing keys ({', '.join(TIMING_KEYS)}).",
            ScheduleError,
        )
    if len(present) != 1:
        problem = "names no component" if not present else f"names several components ({', '.join(present)})"
        raise source.error(
            path, f"the policy {problem}.", f"give exactly one of {', '.join(kinds)} per policy entry.", ScheduleError
        )
    kind = present[0]
    ref = item[kind]
    if not isinstance(ref, Mapping):
        raise source.error(
            (*path, kind),
            f"'{kind}' must be a map with 'instance_name', got {ref!r}.",
            f"write '{kind}: {{instance_name: <name from {SECTION_OF_KIND[kind]}>}}'.",
            ScheduleError,
        )
    for key in ref:
        if key not in POLICY_REF_KEYS:
            raise source.error(
                (*path, kind, key),
                f"unknown key {key!r}.{did_you_mean(str(key), list(POLICY_REF_KEYS))}",
                "a policy's component entry has only 'instance_name' and 'args'.",
                ScheduleError,
            )
    section = SECTION_OF_KIND[kind]
    name = _name(ref.get("instance_name"))
    if name is None:
        raise source.error(
            (*path, kind, "instance_name"),
            f"missing or invalid 'instance_name' (got {ref.get('instance_name')!r}).",
            f"name one of the instances defined under '{section}'.",
            ScheduleError,
        )
    if name not in components.get(section, {}):
        defined = list(components.get(section, {}))
        elsewhere = [s for s, specs in components.items() if name in specs and s != section]
        extra = f" It is defined under '{elsewhere[0]}'." if elsewhere else ""
        listing = f" Defined {section}: {', '.join(defined)}." if defined else f" The schedule defines no {section}."
        raise source.error(
            (*path, kind, "instance_name"),
            f"{kind} {name!r} is not defined.{did_you_mean(name, defined)}{extra}{listing}",
            f"define it under '{section}:' or use a defined name.",
            ScheduleError,
        )
    args = ref.get("args")
    if args is not None and not isinstance(args, Mapping):
        raise source.error(
            (*path, kind, "args"),
            f"'args' must be a map, got {args!r}.",
            "write 'args: {keep_mask: True}'.",
            ScheduleError,
        )
    timing = {k: item[k] for k in TIMING_KEYS if k in item}
    if "frequency" in timing and not {"epochs", "starting_epoch", "ending_epoch"} & set(timing):
        raise source.error(
            (*path, "frequency"),
            "'frequency' is given but the epoch window lacks 'starting_epoch' and 'ending_epoch'.",
            "add 'starting_epoch' and 'ending_epoch' (exclusive).",
            ScheduleError,
        )
    try:
        window = make_window(**timing)
    except ScheduleError as exc:
        raise source.error(path, str(exc).split(" Fix: ")[0], _fix_of(exc) or _TIMING_FIX, ScheduleError) from None
    return PolicySpec(index, kind, name, dict(args) if args is not None else None, timing, window, path)


def _fix_of(exc: Exception) -> str | None:
    text = str(exc)
    return text.split(" Fix: ", 1)[1] if " Fix: " in text else None


def parse_schedule(source: YamlSource) -> ScheduleSpec:
    """Check the structure of ``source`` and collect its components and policies.

    Raises:
        ConfigError: a malformed section or component, more than one quantizer.
        ScheduleError: a malformed policy, bad timing, or a policy naming an undefined instance.
    """
    data = source.data
    if data is None:
        data = {}
        source.warn((), "the schedule is empty; nothing will be scheduled.")
    if not isinstance(data, Mapping):
        raise source.error(
            (),
            f"a schedule must be a map of sections, got {type(data).__name__}.",
            f"start with one of: {', '.join(TOP_LEVEL)}.",
        )
    unknown = [k for k in data if k not in TOP_LEVEL]
    if unknown:
        hints = [f"{k!r} -> {close[0]!r}" for k in unknown if (close := close_matches(str(k), list(TOP_LEVEL)))]
        shown = ", ".join(repr(k) for k in unknown[:10]) + (
            f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        )
        source.warn(
            (unknown[0],),
            f"ignoring unknown top-level section{'s' if len(unknown) > 1 else ''} {shown}."
            + (f" Did you mean {'; '.join(hints)}?" if hints else "")
            + f" Known sections: {', '.join(TOP_LEVEL)}.",
        )
    version = data.get("version")
    if version is not None and version not in (1, "1"):
        source.warn(("version",), f"version {version!r} is not 1; the file is read with the version-1 schema.")
    spec = ScheduleSpec(source)
    for section in SECTIONS:
        spec.components[section] = _parse_section(source, section, data.get(section))
    if len(spec.components["quantizers"]) > 1:
        raise source.error(
            ("quantizers",),
            f"{len(spec.components['quantizers'])} quantizers are defined; only one is supported.",
            "keep one quantizer and express per-layer differences with its 'overrides'.",
        )
    policies = data.get("policies")
    spec.has_policies = "policies" in data
    if policies is None:
        policies = []
    if not isinstance(policies, list):
        raise source.error(
            ("policies",),
            f"'policies' must be a list, got {type(policies).__name__}.",
            "write each policy as a list item starting with '- '.",
            ScheduleError,
        )
    spec.policies = [_parse_policy(source, i, item, spec.components) for i, item in enumerate(policies)]
    if spec.has_policies:
        used = {(p.section, p.instance_name) for p in spec.policies}
        for section, specs in spec.components.items():
            for name, comp in specs.items():
                if (section, name) not in used:
                    source.warn(comp.path, f"{KIND_OF_SECTION[section]} {name!r} is defined but no policy uses it.")
    return spec
