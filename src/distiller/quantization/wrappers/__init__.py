"""Range-linear quantized wrappers: one per kind of operation, each with a deployment (ONNX) form."""

from distiller.quantization.wrappers.base import RangeLinearQuantWrapper
from distiller.quantization.wrappers.eltwise import (
    RangeLinearQuantConcatWrapper,
    RangeLinearQuantEltwiseAddWrapper,
    RangeLinearQuantEltwiseMultWrapper,
    RangeLinearQuantMatmulWrapper,
)
from distiller.quantization.wrappers.fake import FPWrapper, RangeLinearEmbeddingWrapper, RangeLinearFakeQuantWrapper
from distiller.quantization.wrappers.param_layers import RangeLinearQuantParamLayerWrapper, WeightsOnlyQuantWrapper

__all__ = [
    "FPWrapper",
    "RangeLinearEmbeddingWrapper",
    "RangeLinearFakeQuantWrapper",
    "RangeLinearQuantConcatWrapper",
    "RangeLinearQuantEltwiseAddWrapper",
    "RangeLinearQuantEltwiseMultWrapper",
    "RangeLinearQuantMatmulWrapper",
    "RangeLinearQuantParamLayerWrapper",
    "RangeLinearQuantWrapper",
    "WeightsOnlyQuantWrapper",
]
