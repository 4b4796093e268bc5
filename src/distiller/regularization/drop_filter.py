"""DropFilter: randomly drop whole convolution filters during training (a structured dropout).

Every ``frequency`` training forward passes, each filter of a wrapped convolution is dropped with
probability ``drop_prob`` for that one pass, and the surviving weights are scaled up by the share
of the layer's L1 mass that survived (bounded below by ``min_scale``, as in the original), so the
layer's output keeps roughly its magnitude. In evaluation mode the convolution is untouched.

Differences from the original, which was not exported and so unusable from a schedule:

- it is registered, and builds from YAML with ``(name, model, reg_regims=None, ...)``;
- the wrapper *shares* the original convolution's ``weight`` and ``bias`` parameters instead of
  creating new, freshly initialized ones: trained weights are kept, the optimizer (created before
  the schedule) still updates the right tensors, and state-dict keys do not change;
- it keeps dilation, groups and padding mode (the original dropped them), draws from PyTorch's
  RNG (so ``--seed`` makes it reproducible) and never divides by a zero L1 mass;
- ``drop_prob`` is the probability to *drop* a filter (the original's ``p_mask`` was the keep
  probability, fixed at 1.0, i.e. nothing was ever dropped).

Forward/backward hooks registered on a wrapped convolution are not carried over to the wrapper;
:func:`restore_conv2d` puts plain ``nn.Conv2d`` modules back (e.g. before graph tracing or export).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.regularization.base import Regularizer, register_regularizer

__all__ = ["Conv2dWithMask", "DropFilterRegularizer", "replace_conv2d", "restore_conv2d"]


class Conv2dWithMask(nn.Conv2d):
    """An ``nn.Conv2d`` that drops whole filters (output channels) in some training passes.

    Attributes:
        drop_prob: probability of dropping each filter in a dropping pass.
        frequency: one forward pass in ``frequency`` (in training) drops filters.
        min_scale: lower bound of the rescaling divisor (the kept share of the L1 mass).
        last_keep_mask: the 0/1 filter mask of the latest dropping pass (``None`` before one).
    """

    def __init__(self, *args: Any, drop_prob: float = 0.1, frequency: int = 16, min_scale: float = 0.2, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.drop_prob = drop_prob
        self.frequency = frequency
        self.min_scale = min_scale
        self.last_keep_mask: torch.Tensor | None = None
        self._countdown = frequency
        self.active = True  # a schedule turns dropping on only inside its policy's window

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, drop_prob: float, frequency: int, min_scale: float) -> Conv2dWithMask:
        """A wrapper that computes with ``conv``'s own parameter objects (no copy, no re-init)."""
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",
            drop_prob=drop_prob,
            frequency=frequency,
            min_scale=min_scale,
        )
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new

    def to_conv(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` sharing this module's parameters."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,
            device="meta",
        )
        conv.weight = self.weight
        conv.bias = self.bias
        conv.train(self.training)
        return conv

    def configure(self, drop_prob: float, frequency: int, min_scale: float) -> None:
        """Change the dropping settings (restarts the pass count)."""
        self.drop_prob, self.frequency, self.min_scale = drop_prob, frequency, min_scale
        self._countdown = frequency

    def dropped_weight(self) -> torch.Tensor:
        """The weight with a fresh random set of filters zeroed and the rest rescaled."""
        weight = self.weight
        keep = torch.bernoulli(torch.full((weight.size(0),), 1.0 - self.drop_prob, device=weight.device))
        keep = keep.to(weight.dtype)
        self.last_keep_mask = keep
        l1 = weight.detach().abs().flatten(1).sum(dim=1)
        total = l1.sum()
        kept_share = torch.where(total > 0, (l1 * keep).sum() / total.clamp_min(torch.finfo(l1.dtype).tiny), 1.0)
        scale = kept_share.clamp_min(self.min_scale)
        return weight * keep.view(-1, *([1] * (weight.dim() - 1))) / scale

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self.training and self.active and self.drop_prob > 0:
            self._countdown -= 1
            if self._countdown <= 0:
                self._countdown = self.frequency
                weight = self.dropped_weight()
        return self._conv_forward(input, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, drop_prob={self.drop_prob}, frequency={self.frequency}"


def _modules_by_canonical_name(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    return {normalize_module_name(raw): (raw, module) for raw, module in model.named_modules()}


def _swap(model: nn.Module, raw_name: str, new: nn.Module) -> None:
    parent_name, _, child = raw_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def replace_conv2d(
    model: nn.Module,
    module_names: Iterable[str] | None = None,
    *,
    drop_prob: float = 0.1,
    frequency: int = 16,
    min_scale: float = 0.2,
) -> list[str]:
    """Wrap ``nn.Conv2d`` modules of ``model`` in :class:`Conv2dWithMask`, in place.

    Args:
        model: the model (wrapped in DataParallel or not).
        module_names: canonical names of the convolutions to wrap; ``None`` wraps every plain
            ``nn.Conv2d`` (exactly that class: subclasses may compute differently).
        drop_prob, frequency, min_scale: see :class:`Conv2dWithMask`.

    Returns:
        The canonical names of the wrapped modules. A module that is already wrapped is
        reconfigured, not wrapped twice.
    """
    modules = _modules_by_canonical_name(model)
    if module_names is None:
        module_names = [n for n, (_, m) in modules.items() if type(m) in (nn.Conv2d, Conv2dWithMask) and n]
    done = []
    for name in module_names:
        raw, module = modules[normalize_module_name(name)]
        if isinstance(module, Conv2dWithMask):
            module.configure(drop_prob, frequency, min_scale)
        else:
            _swap(model, raw, Conv2dWithMask.from_conv(module, drop_prob, frequency, min_scale))
        done.append(normalize_module_name(name))
    return done


def restore_conv2d(model: nn.Module) -> list[str]:
    """Replace every :class:`Conv2dWithMask` of ``model`` by a plain ``nn.Conv2d`` (same parameters).

    Returns:
        The canonical names of the restored modules.
    """
    restored = []
    for name, (raw, module) in _modules_by_canonical_name(model).items():
        if isinstance(module, Conv2dWithMask) and name:
            _swap(model, raw, module.to_conv())
            restored.append(name)
    return restored


@register_regularizer()
class DropFilterRegularizer(Regularizer):
    """Drop random convolution filters during training (adds no loss term).

    Args:
        name: the instance name.
        model: the model; its chosen ``nn.Conv2d`` modules are replaced, in place, by
            :class:`Conv2dWithMask` wrappers that share their parameters.
        reg_regims: ``None`` (every ``nn.Conv2d``, each with ``drop_prob``), a list of convolution
            weight names (each with ``drop_prob``), or ``{conv weight name: drop probability}``.
        threshold_criteria: must be ``None``: dropping is random, there is nothing to threshold.
        drop_prob: default probability of dropping a filter in a dropping pass, in [0, 1).
        frequency: filters are dropped in one training forward pass out of ``frequency``.
        min_scale: the rescaling divisor's lower bound, in (0, 1].

    Raises:
        ConfigError: a name that is not the weight of an ``nn.Conv2d``, a probability outside
            [0, 1), a non-positive frequency, a ``min_scale`` outside (0, 1], a threshold criterion,
            or a model without convolutions.
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        reg_regims: Mapping[str, Any] | Iterable[str] | None = None,
        threshold_criteria: str | None = None,
        drop_prob: float = 0.1,
        frequency: int = 16,
        min_scale: float = 0.2,
    ) -> None:
        where = f"DropFilterRegularizer {name!r}"
        if threshold_criteria is not None:
            raise ConfigError(f"{where}: threshold_criteria is not supported (dropping is random); remove it.")
        self.drop_prob = _probability(drop_prob, f"{where}: drop_prob")
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ConfigError(f"{where}: frequency must be an integer >= 1, got {frequency!r}.")
        if isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)) or not 0 < min_scale <= 1:
            raise ConfigError(f"{where}: min_scale must be a number in (0, 1], got {min_scale!r}.")
        self.frequency = frequency
        self.min_scale = float(min_scale)
        self._modules_by_name = _modules_by_canonical_name(model)
        if reg_regims is None:
            convs = [n for n, (_, m) in self._modules_by_name.items() if n and _is_conv(m)]
            reg_regims = {f"{n}.weight": self.drop_prob for n in convs}
            if not reg_regims:
                raise ConfigError(f"{where}: the model has no nn.Conv2d module to drop filters from.")
        elif not isinstance(reg_regims, Mapping):
            if isinstance(reg_regims, str) or not isinstance(reg_regims, Iterable):
                raise ConfigError(
                    f"{where}: reg_regims must be omitted, a list of convolution weight names, or a mapping "
                    f"{{name: drop probability}}; got {reg_regims!r}."
                )
            reg_regims = {n: self.drop_prob for n in reg_regims}
        super().__init__(name, model, reg_regims, threshold_criteria)
        del self._modules_by_name  # only needed to validate names; the wrapping below replaces modules
        for param_name, prob in self.reg_regims.items():
            replace_conv2d(
                model, [param_name.rpartition(".")[0]], drop_prob=prob, frequency=frequency, min_scale=self.min_scale
            )

    def parse_regime(self, param_name: str, value: Any, param: torch.Tensor) -> float:
        module_name, _, attr = param_name.rpartition(".")
        module = self._modules_by_name.get(module_name, (None, None))[1]
        if attr != "weight" or not _is_conv(module):
            raise ConfigError(
                f"{self._where(param_name)}: DropFilter drops filters of nn.Conv2d layers; {param_name!r} is not "
                "the weight of one. Name a convolution's weight, or omit reg_regims to use every nn.Conv2d."
            )
        return _probability(value, self._where(param_name))

    def loss(
        self,
        param: torch.Tensor,
        param_name: str,
        regularizer_loss: torch.Tensor | float,
        zeros_mask_dict: Any = None,
    ) -> torch.Tensor | float:
        """DropFilter acts in the forward pass; it adds nothing to the loss."""
        return regularizer_loss

    def set_active(self, active: bool) -> None:
        """Drop filters (in training) only while ``active``: the regularization policy turns this on
        for the epochs of its window and off after them."""
        for module in self.model.modules():
            if isinstance(module, Conv2dWithMask):
                module.active = active

    def remove(self) -> list[str]:
        """Put plain ``nn.Conv2d`` modules back (e.g. once training is over)."""
        return restore_conv2d(self.model)


def _is_conv(module: nn.Module | None) -> bool:
    return type(module) in (nn.Conv2d, Conv2dWithMask)


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{where}: the drop probability must be a number in [0, 1), got {value!r}.")
    return float(value)
