"""Export of trained (and compressed) models to deployment formats."""

from distiller.export.onnx import DEFAULT_OPSET, SoftmaxOutput, export_img_classifier_to_onnx, unwrap_parallel

__all__ = ["DEFAULT_OPSET", "SoftmaxOutput", "export_img_classifier_to_onnx", "unwrap_parallel"]
