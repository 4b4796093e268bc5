"""Errors raised for bad user input.

Every error a user can cause (a wrong flag, a bad file, an unknown name) is a :class:`DistillerError`.
The CLI prints its message as one paragraph, without a traceback, and exits non-zero. Messages name
the offending file or key and say how to fix it.
"""

from __future__ import annotations


class DistillerError(Exception):
    """Base class of all user-facing errors."""


class ConfigError(DistillerError):
    """A configuration value is wrong: unknown name, bad YAML, invalid argument."""


class ScheduleError(ConfigError):
    """A compression schedule is inconsistent (timing, undefined instances, ...)."""


class ModelError(DistillerError):
    """A model cannot be built or does not match what was asked for."""


class DataError(DistillerError):
    """A dataset is missing or malformed."""


class CheckpointError(DistillerError):
    """A checkpoint cannot be read, is unsafe, or does not fit the model."""


class GraphError(DistillerError):
    """A model graph cannot be built or queried."""


class ExportError(DistillerError):
    """A model or a report cannot be exported or written (ONNX file, graph drawing, output path)."""


class QuantizationError(DistillerError):
    """A model cannot be quantized as asked (bad quantizer settings, missing statistics, unsupported layer)."""


class DistributedError(DistillerError):
    """A distributed (DDP) run cannot start or continue: bad launch environment, ranks that disagree, a
    collective operation that timed out because another rank failed or stalled."""
