"""Distiller: neural-network compression research on PyTorch 2.x.

The public API is re-exported here. Importing the package has no side effects beyond registering
the built-in components (models, datasets) in their registries.
"""

from distiller.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DistillerError,
    GraphError,
    ModelError,
    ScheduleError,
)
from distiller.registry import Registry

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DistillerError",
    "GraphError",
    "ModelError",
    "Registry",
    "ScheduleError",
    "__version__",
]
