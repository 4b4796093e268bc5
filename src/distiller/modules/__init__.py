"""Small helper modules that turn functional tensor operations into named, hookable modules.

Quantization, activation statistics and thinning work per module. A residual ``out + identity`` or a
``torch.cat`` written inline is invisible to them; the same operation done by :class:`EltwiseAdd` or
:class:`Concat` has a name (``layer1.0.add``) that schedules and statistics files can refer to.
"""

from distiller.modules.eltwise import EltwiseAdd, EltwiseDiv, EltwiseMult, EltwiseSub
from distiller.modules.tensor_ops import BatchMatmul, Chunk, Concat, Matmul, Mean, Norm, Split, Stack

__all__ = [
    "BatchMatmul",
    "Chunk",
    "Concat",
    "EltwiseAdd",
    "EltwiseDiv",
    "EltwiseMult",
    "EltwiseSub",
    "Matmul",
    "Mean",
    "Norm",
    "Split",
    "Stack",
]
