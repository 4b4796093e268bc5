"""Export of trained (and compressed) models to deployment formats, and running them in ONNX Runtime."""

from distiller.export.onnx import DEFAULT_OPSET, SoftmaxOutput, export_img_classifier_to_onnx, unwrap_parallel
from distiller.export.onnx_runtime import OnnxRuntimeModel, quantize_static_onnx

__all__ = [
    "DEFAULT_OPSET",
    "OnnxRuntimeModel",
    "SoftmaxOutput",
    "export_img_classifier_to_onnx",
    "quantize_static_onnx",
    "unwrap_parallel",
]
