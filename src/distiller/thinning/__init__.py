"""Thinning: physically removing pruned structures (filters, channels, layers) from a model.

A :class:`ThinningPlan` is plain data (which indices of which tensors to keep, and constants folded
into biases); applying it shrinks the model, its gradients, optimizer state and masks. Plans are
derived from masks and the model's channel groups (:func:`plan_from_masks`), saved in checkpoints
and replayed on a dense model to rebuild the thinned shapes.
"""

from distiller.thinning.api import contract_model, remove_channels, remove_filters, thin_model
from distiller.thinning.from_masks import ThinningReport, plan_from_masks
from distiller.thinning.layer_removal import find_zero_conv_layers, resnet_cifar_remove_layers
from distiller.thinning.legacy import ThinningRecipe
from distiller.thinning.module_shapes import derive_module_attributes, sync_module_attributes
from distiller.thinning.plan import TensorShift, TensorSlice, ThinningPlan, applied_thinning_plans

__all__ = [
    "TensorShift",
    "TensorSlice",
    "ThinningPlan",
    "ThinningRecipe",
    "ThinningReport",
    "applied_thinning_plans",
    "contract_model",
    "derive_module_attributes",
    "find_zero_conv_layers",
    "plan_from_masks",
    "remove_channels",
    "remove_filters",
    "resnet_cifar_remove_layers",
    "sync_module_attributes",
    "thin_model",
]
