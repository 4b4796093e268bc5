"""Schedules as data plus where each key came from, so every error names a file, a path and a line.

YAML is read with a ``yaml.SafeLoader`` (no Python objects can be built from a schedule) that
also reads ``1e-4`` as a number. Python
dicts keep insertion order, so the order of policies and of quantizer ``overrides`` is the file's
(the original needed an ``OrderedDict`` loader for that). The composed node tree gives the line of
every key; :meth:`YamlSource.error` turns a YAML path such as ``('policies', 2, 'pruner',
'instance_name')`` into ``policies[2].pruner.instance_name`` and its line.

A schedule given as a dict (``dict_config``) is a :class:`YamlSource` without lines.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distiller.errors import ConfigError

__all__ = ["YamlPath", "YamlSource", "format_path", "load_yaml_file", "load_yaml_text"]

logger = logging.getLogger(__name__)

YamlPath = tuple[Any, ...]


def _format_key(key: Any) -> str:
    text = str(key)
    if not text or any(c in text for c in ".[] ") or not isinstance(key, str):
        return f"[{text!r}]" if isinstance(key, str) else f"[{text}]"
    return text


def format_path(path: Sequence[Any]) -> str:
    """``('policies', 2, 'pruner')`` -> ``policies[2].pruner``; dotted keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool) and out:
            out += f"[{part}]"
            continue
        key = _format_key(part)
        out += key if key.startswith("[") or not out else f".{key}"
    return out or "the top level"


@dataclass
class YamlSource:
    """A loaded schedule: the data, its origin and the line of each YAML path.

    Attributes:
        name: the file path (or ``"<dict>"``) shown in messages.
        data: the parsed document.
        lines: 1-based line of each key / list item, by YAML path.
        warnings: what the loader noticed but tolerated (duplicate keys, unknown sections, ...).
    """

    name: str
    data: Any
    lines: dict[YamlPath, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def line(self, path: Sequence[Any]) -> int | None:
        """The line of ``path``, or of its closest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def where(self, path: Sequence[Any]) -> str:
        """``file, policies[2].pruner (line 41)``."""
        line = self.line(path)
        return f"{self.name}, {format_path(path)}" + (f" (line {line})" if line else "")

    def error(
        self, path: Sequence[Any], problem: str, fix: str | None = None, cls: type[ConfigError] = ConfigError
    ) -> ConfigError:
        """An error of type ``cls`` that names the file, the YAML path, the line and the fix."""
        message = f"{self.where(path)}: {problem.rstrip()}"
        if fix:
            message += f" Fix: {fix.rstrip()}"
        return cls(message)

    def warn(self, path: Sequence[Any], message: str) -> None:
        """Log a warning naming the file, path and line, and keep it for the plan."""
        text = f"{self.where(path)}: {message}"
        self.warnings.append(text)
        logger.warning("%s", text)


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` that also reads ``1e-4`` (exponent, no dot) as a float, as YAML 1.2 does.

    PyYAML follows YAML 1.1, where ``1e-4`` is the *string* "1e-4": a schedule's
    ``eta_min: 1e-5`` would reach the LR scheduler as text and fail deep inside it.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _key_value(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.ScalarNode):
        try:
            return loader.construct_object(node)
        except Exception:  # noqa: BLE001 - a key we cannot build only loses its line number
            return node.value
    return None


def _index(root: yaml.Node | None, loader: yaml.SafeLoader) -> tuple[dict[YamlPath, int], list[tuple[YamlPath, int]]]:
    """Lines of every key and list item, and duplicate keys, from the composed (unmerged) nodes.

    Each node is visited once, so aliases (``*anchor``) cannot make this walk explode.
    """
    lines: dict[YamlPath, int] = {}
    duplicates: list[tuple[YamlPath, int]] = []
    seen: set[int] = set()
    stack: list[tuple[YamlPath, yaml.Node]] = [((), root)] if root is not None else []
    while stack:
        path, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[Any] = set()
            for knode, vnode in node.value:
                key = _key_value(knode, loader)
                if key == "<<" or key is None and not isinstance(knode, yaml.ScalarNode):
                    continue
                try:
                    duplicate = key in keys
                    keys.add(key)
                except TypeError:
                    continue
                sub = (*path, key)
                line = knode.start_mark.line + 1
                if duplicate:
                    duplicates.append((sub, line))
                lines.setdefault(sub, line)
                stack.append((sub, vnode))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault((*path, i), item.start_mark.line + 1)
                stack.append(((*path, i), item))
    return lines, duplicates


def load_yaml_text(text: str, name: str = "<string>") -> YamlSource:
    """Parse ``text`` safely, keeping key order and line numbers.

    Raises:
        ConfigError: invalid YAML (with the line and column), several documents, or a document
            the safe loader cannot build.
    """
    loader: yaml.SafeLoader | None = None
    try:
        loader = _Loader(text)  # the reader already rejects control characters here
        root = loader.get_single_node()
        lines, duplicates = _index(root, loader)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(
            f"{name}: invalid YAML{where}: {problem}. Fix: check the indentation and the ':' and '-' "
            "around that line (YAML uses spaces, never tabs)."
        ) from None
    except RecursionError:
        raise ConfigError(f"{name}: the YAML is nested too deeply to read. Fix: flatten the document.") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"{name}: cannot read the YAML: {exc}. Fix: correct the value it names.") from None
    finally:
        if loader is not None:
            loader.dispose()
    source = YamlSource(name, data, lines)
    for path, line in duplicates:
        source.warn(path, f"key repeated (line {line}); YAML keeps only the last value.")
    return source


def load_yaml_file(path: str | os.PathLike) -> YamlSource:
    """Read and parse a schedule file.

    Raises:
        ConfigError: missing or unreadable file, not UTF-8 text, or invalid YAML.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"Schedule file {str(p)!r} does not exist. Fix: check the path.")
    if not p.is_file():
        raise ConfigError(f"Schedule path {str(p)!r} is not a file. Fix: give the path of a .yaml file.")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}). Fix: save it as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the file: {exc.strerror}.") from None
    return load_yaml_text(text, str(p))
