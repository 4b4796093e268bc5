"""Regularizers: loss penalties that push weights (or whole structures) towards zero.

Each is registered in :data:`REGULARIZERS` under the original Distiller's class name, so a
schedule's ``regularizers:`` section builds it with ``class: GroupLassoRegularizer`` and the
original arguments. ``RegularizationPolicy`` adds :meth:`Regularizer.loss` to the training loss as
the component :attr:`Regularizer.loss_component_name` and, with a ``threshold_criteria``, applies
:meth:`Regularizer.threshold`'s one-shot masks after each step. Register your own with
:func:`register_regularizer`.
"""

from distiller.regularization.base import EPSILON, REGULARIZERS, Regularizer, parse_strength, register_regularizer
from distiller.regularization.drop_filter import (
    Conv2dWithMask,
    DropFilterRegularizer,
    replace_conv2d,
    restore_conv2d,
)
from distiller.regularization.group_lasso import GroupLassoRegularizer, GroupVarianceRegularizer
from distiller.regularization.groups import GROUP_TYPES
from distiller.regularization.l1 import L1Regularizer

__all__ = [
    "EPSILON",
    "GROUP_TYPES",
    "REGULARIZERS",
    "Conv2dWithMask",
    "DropFilterRegularizer",
    "GroupLassoRegularizer",
    "GroupVarianceRegularizer",
    "L1Regularizer",
    "Regularizer",
    "parse_strength",
    "register_regularizer",
    "replace_conv2d",
    "restore_conv2d",
]
