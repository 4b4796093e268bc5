"""Compatibility facade: the original Distiller's ``distiller.quantization.q_utils`` module name.

The math lives in :mod:`~distiller.quantization.modes`, :mod:`~distiller.quantization.linear`,
:mod:`~distiller.quantization.ranges`, :mod:`~distiller.quantization.aciq`,
:mod:`~distiller.quantization.scale_approx` and :mod:`~distiller.quantization.ste`; this module only
re-exports it so that code written against the original's ``q_utils`` keeps its imports.
"""

from distiller.quantization.aciq import *  # noqa: F403
from distiller.quantization.aciq import __all__ as _aciq_all
from distiller.quantization.linear import *  # noqa: F403
from distiller.quantization.linear import __all__ as _linear_all
from distiller.quantization.modes import *  # noqa: F403
from distiller.quantization.modes import __all__ as _modes_all
from distiller.quantization.ranges import *  # noqa: F403
from distiller.quantization.ranges import __all__ as _ranges_all
from distiller.quantization.scale_approx import *  # noqa: F403
from distiller.quantization.scale_approx import __all__ as _scale_approx_all
from distiller.quantization.ste import *  # noqa: F403
from distiller.quantization.ste import __all__ as _ste_all

__all__ = [*_aciq_all, *_linear_all, *_modes_all, *_ranges_all, *_scale_approx_all, *_ste_all]
