"""Reading and writing activation-statistics files (``acts_quantization_stats.yaml``).

The layout is the original Distiller's, so its published files load unchanged and files written
here load in the original::

    conv1:
      inputs:
        0:
          min: -2.1179039478302
          max: 2.640000104904175
          avg_min: ...            # optional from here on
          avg_max: ...
          mean: ...
          std: ...
          b: ...
          shape: (256, 3, 224, 224)
          total_numel: ...        # written here; the original's files lack it
      output:
        min: ...

A post-training quantizer trusts these numbers blindly, so loading validates the structure and
reports a bad entry by file, module and key instead of failing later inside a quantizer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from distiller.errors import ConfigError, QuantizationError
from distiller.fileio import atomic_output
from distiller.naming import normalize_module_name
from distiller.quantization.calibration import STAT_KEYS
from distiller.registry import close_matches, did_you_mean

__all__ = ["load_quant_stats", "save_quant_stats", "stats_for"]

_NUMERIC_KEYS = ("min", "max", "avg_min", "avg_max", "mean", "std", "b")
_REQUIRED_KEYS = ("min", "max")
_MODULE_KEYS = ("inputs", "output")

DEFAULT_HEADER = (
    "Activation statistics for post-training quantization, written by distiller (collect_quant_stats).\n"
    "Per module: statistics of each positional input and of the output over the calibration batches.\n"
    "Load them with --qe-stats-file (or distiller.quantization.stats_file.load_quant_stats)."
)

_REGENERATE = "Re-create the file with --qe-calibration, or fix the entry by hand"


# --- validation ---------------------------------------------------------------------------------


def _fail(where: str, location: str, problem: str, fix: str) -> ConfigError:
    end = "" if fix.endswith((".", "?")) else "."
    return ConfigError(f"Quantization statistics {where}: {location} {problem}. {fix}{end}")


def _number(value: Any, where: str, location: str, key: str) -> float:
    """``value`` as a float; YAML 1.1 reads ``1e-5`` (no dot) as a string, so numeric strings pass."""
    if isinstance(value, bool) or value is None:
        raise _fail(where, location, f"has {key}: {value!r}, not a number", _REGENERATE)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _fail(where, location, f"has {key}: {value!r}, not a number", _REGENERATE)


def _shape(value: Any, where: str, location: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return str(tuple(value))
    raise _fail(where, location, f"has shape: {value!r}, expected a string like '(256, 3, 224, 224)'", _REGENERATE)


def _entry(value: Any, where: str, location: str) -> dict[str, Any]:
    """One statistics entry, with keys in :data:`STAT_KEYS` order and plain float values."""
    if not isinstance(value, Mapping):
        raise _fail(
            where,
            location,
            f"is a {type(value).__name__}, not a mapping of statistics",
            f"Give it at least min and max. {_REGENERATE}",
        )
    for key in value:
        if key not in STAT_KEYS:
            hint = did_you_mean(str(key), list(STAT_KEYS))
            raise _fail(
                where, location, f"has an unknown key {key!r}", f"{hint} Known keys: {', '.join(STAT_KEYS)}".strip()
            )
    for key in _REQUIRED_KEYS:
        if key not in value:
            raise _fail(where, location, f"has no '{key}'", f"Every entry needs numeric 'min' and 'max'. {_REGENERATE}")
    entry: dict[str, Any] = {}
    for key in STAT_KEYS:
        if key not in value:
            continue
        raw = value[key]
        if key in _NUMERIC_KEYS:
            entry[key] = _number(raw, where, location, key)
        elif key == "shape":
            entry[key] = _shape(raw, where, location)
        else:  # total_numel
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                raise _fail(where, location, f"has total_numel: {raw!r}, not a count", _REGENERATE)
            entry[key] = raw
    lo, hi = entry["min"], entry["max"]
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise _fail(
            where,
            location,
            f"has min {lo!r} and max {hi!r}, not a finite range",
            "The module saw no data or overflowed during calibration; re-collect the statistics",
        )
    return entry


def _input_index(key: Any, where: str, module: str) -> int:
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    if isinstance(key, str) and key.isdigit():
        return int(key)
    raise _fail(
        where,
        f"module {module!r}, inputs",
        f"has the key {key!r}",
        "Inputs are keyed by their position: 0, 1, ...",
    )


def _module(value: Any, where: str, module: str) -> dict[str, Any]:
    location = f"module {module!r}"
    if not isinstance(value, Mapping):
        raise _fail(where, location, f"is a {type(value).__name__}, not a mapping", "Give it 'inputs' and/or 'output'")
    for key in value:
        if key not in _MODULE_KEYS:
            hint = did_you_mean(str(key), list(_MODULE_KEYS))
            raise _fail(where, location, f"has an unknown key {key!r}", f"{hint} Allowed keys: inputs, output".strip())
    record: dict[str, Any] = {}
    if "inputs" in value:
        inputs = value["inputs"]
        if not isinstance(inputs, Mapping):
            raise _fail(
                where,
                f"{location}, inputs",
                f"is a {type(inputs).__name__}, not a mapping",
                "Key the inputs by position: 'inputs: {0: {min: ..., max: ...}}'",
            )
        parsed: dict[int, dict[str, Any]] = {}
        for key, entry in inputs.items():
            index = _input_index(key, where, module)
            if index in parsed:
                raise _fail(where, f"{location}, inputs", f"lists input {index} twice", "Keep one entry per input")
            parsed[index] = _entry(entry, where, f"{location}, inputs[{index}]")
        if parsed:
            record["inputs"] = {index: parsed[index] for index in sorted(parsed)}
    if "output" in value:
        record["output"] = _entry(value["output"], where, f"{location}, output")
    if not record:
        raise _fail(where, location, "has no statistics", "Give it 'inputs' and/or 'output' entries with min and max")
    return record


def _validate(data: Any, where: str) -> dict[str, dict[str, Any]]:
    if data is None:
        raise ConfigError(f"Quantization statistics {where} is empty. {_REGENERATE}.")
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"Quantization statistics {where} holds a {type(data).__name__}, not a mapping of module names to "
            f"statistics. {_REGENERATE}."
        )
    stats: dict[str, dict[str, Any]] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not name:
            raise _fail(
                where, f"the key {name!r}", "is not a module name", "Top-level keys are module names such as 'conv1'"
            )
        canonical = normalize_module_name(name)
        if canonical in stats:
            raise _fail(
                where,
                f"module {name!r}",
                f"repeats {canonical!r} (after dropping 'module.')",
                "Keep one entry per module",
            )
        stats[canonical] = _module(value, where, name)
    return stats


# --- files --------------------------------------------------------------------------------------


def load_quant_stats(source: str | os.PathLike | Mapping) -> dict[str, dict[str, Any]]:
    """Read and validate activation statistics.

    Args:
        source: a YAML file (the original's layout) or an already-loaded mapping.

    Returns:
        ``{module: {"inputs": {index: entry}, "output": entry}}`` in the file's order. Module names lose
        DataParallel ``module.`` elements, input keys become ints, numbers become floats, and each entry's
        keys follow :data:`STAT_KEYS` order. Optional keys stay absent when missing.

    Raises:
        ConfigError: the file cannot be read or parsed, or an entry is malformed (the message names the
            file, the module and the key).
    """
    if isinstance(source, Mapping):
        return _validate(source, "(the given mapping)")
    path = Path(source)
    where = f"file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(
            f"Cannot read the quantization statistics file {str(path)!r}: {e.strerror or e}. "
            "Check the path (--qe-stats-file), or collect statistics with --qe-calibration."
        ) from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or e
        raise ConfigError(
            f"Quantization statistics {where} is not valid YAML{line}: {problem}. Fix the syntax "
            "or re-create the file with --qe-calibration."
        ) from e
    return _validate(data, where)


def _plain(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry with Python scalars only (``yaml.safe_dump`` rejects numpy/torch numbers)."""
    out: dict[str, Any] = {}
    for key in STAT_KEYS:
        if key in entry:
            value = entry[key]
            out[key] = value if key == "shape" else (int(value) if key == "total_numel" else float(value))
    return out


def save_quant_stats(stats: Mapping[str, Any], path: str | os.PathLike, *, header: str | None = DEFAULT_HEADER) -> Path:
    """Write ``stats`` in the ``acts_quantization_stats.yaml`` layout, atomically.

    The statistics are validated first (a file that could not be loaded back is never written). Floats
    are written with Python's shortest round-trip representation, so loading gives equal values.

    Args:
        stats: as returned by :func:`~distiller.quantization.calibration.collect_quant_stats`.
        path: the YAML file; parent folders are created.
        header: comment lines at the top of the file (``None``: none).

    Returns:
        The path written.

    Raises:
        ConfigError: ``stats`` is malformed.
        ExportError: the file cannot be written.
    """
    checked = _validate(stats, "(to save)")
    document = {}
    for name, record in checked.items():
        out: dict[str, Any] = {}
        if "inputs" in record:
            out["inputs"] = {index: _plain(entry) for index, entry in record["inputs"].items()}
        if "output" in record:
            out["output"] = _plain(record["output"])
        document[name] = out
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + "\n" if header else ""
    path = Path(path)
    with atomic_output(path, "quantization statistics file") as tmp:
        tmp.write_text(comment + body, encoding="utf-8")
    return path


def stats_for(stats: Mapping[str, Any], module_name: str) -> dict[str, Any]:
    """The statistics of ``module_name`` (a ``module.`` DataParallel spelling is accepted).

    Raises:
        QuantizationError: ``stats`` has no entry for the module; the message lists close names.
    """
    for candidate in (module_name, normalize_module_name(module_name)):
        if candidate in stats:
            return stats[candidate]
    names = [str(n) for n in stats]
    close = close_matches(normalize_module_name(module_name), names, n=5)
    hint = f" Close names: {', '.join(repr(n) for n in close)}." if close else ""
    raise QuantizationError(
        f"No activation statistics for module {module_name!r} ({len(names)} modules have statistics).{hint} "
        "The statistics file must come from this model (same module names); re-collect them with "
        "--qe-calibration, or exclude the module from quantization."
    )
