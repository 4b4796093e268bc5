"""Thinning: physically removing pruned structures (filters, channels, layers) from a model.

A :class:`ThinningPlan` is plain data (which indices of which tensors to keep); applying it shrinks
the model, its gradients, optimizer state and masks. Plans are saved in checkpoints and replayed on
a dense model to rebuild the thinned shapes.
"""

from distiller.thinning.layer_removal import find_zero_conv_layers, resnet_cifar_remove_layers
from distiller.thinning.legacy import ThinningRecipe
from distiller.thinning.module_shapes import derive_module_attributes, sync_module_attributes
from distiller.thinning.plan import TensorSlice, ThinningPlan, applied_thinning_plans

__all__ = [
    "TensorSlice",
    "ThinningPlan",
    "ThinningRecipe",
    "applied_thinning_plans",
    "derive_module_attributes",
    "find_zero_conv_layers",
    "resnet_cifar_remove_layers",
    "sync_module_attributes",
]
