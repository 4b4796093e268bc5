"""Distiller: neural-network compression research on PyTorch 2.x.

The public API is re-exported here. Importing the package has no side effects beyond registering
the built-in components (models, datasets) in their registries.
"""

from distiller.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DistillerError,
    DistributedError,
    ExportError,
    GraphError,
    ModelError,
    QuantizationError,
    ScheduleError,
)
from distiller.registry import Registry

__version__ = "0.1.0"

_LAZY = {
    "prune": "distiller.pruning",
    "create_model": "distiller.models",
    "load_data": "distiller.data",
    "save_checkpoint": "distiller.checkpoint",
    "load_checkpoint": "distiller.checkpoint",
    "sparsity_summary": "distiller.summary",
    "compute_summary": "distiller.summary",
    "export_img_classifier_to_onnx": "distiller.export",
    "quantize": "distiller.quantization",
    "export_onnx": "distiller.quantization",
    "collect_quant_stats": "distiller.quantization",
    "PostTrainLinearQuantizer": "distiller.quantization",
}


def __getattr__(name: str):
    """Import the heavier parts of the public API on first use, so ``import distiller`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distiller' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DistillerError",
    "DistributedError",
    "ExportError",
    "GraphError",
    "ModelError",
    "QuantizationError",
    "Registry",
    "ScheduleError",
    "__version__",
    *_LAZY,
]
