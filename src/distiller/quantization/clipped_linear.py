"""Quantization-aware training with clipped activations: DoReFa, PACT and WRPN.

All three train float shadow weights through quantized ones (``train_with_fp_copy``, see
:mod:`distiller.quantization.quantizer`) and replace every ``nn.ReLU`` by a clipping quantizer:

* :class:`DorefaQuantizer`: weights ``2·quantize_k(tanh(w) / (2·max|tanh w|) + ½) − 1`` (at most ``2^k``
  values, ``k = bits_weights``); ``k = 1``: ``sign(w)·mean|w|``. ReLUs → clip to ``[0, 1]``, ``k``-bit
  (``2^k`` levels, ``k = bits_activations``).
* :class:`PACTQuantizer`: DoReFa weights; ReLUs → clip to ``[0, α]`` with a learned α, ``k``-bit.
* :class:`WRPNQuantizer`: weights clamped to ``[−1, 1]``, symmetric with ``k − 1`` magnitude bits and a
  sign (``2^k − 1`` values; ``k ≥ 2``); ReLUs → clip to ``[0, 1]``, ``k``-bit.

``quantize_k(x) = round((2^k − 1)·x) / (2^k − 1)`` for ``x ∈ [0, 1]``. Rounding passes gradients straight
through (STE); clipping passes them only inside the clipping range.

Two DoReFa options are new (both keep the number of non-zero levels):

* ``keep_pruned_zeros`` (default on): DoReFa's grid has no 0 (``2i − (2^k − 1)`` is odd), so a pruned
  weight would become ``±1/(2^k − 1)`` and a pruned-then-quantized network would compute with dense
  weights; exact zeros stay 0 instead (a pruned tensor: at most ``2^k`` levels plus 0).
* ``scale_weights`` (default off): DoReFa's weights span ``[−1, 1]`` whatever the float weights' scale,
  which batch norm absorbs; a network without batch norm needs them scaled back by ``max|tanh w|``.

PACT (Choi et al. 2018, arXiv:1805.06085): ``y = clip(x, 0, α)`` quantized to ``k`` bits with scale
``(2^k − 1)/α``; ``∂y/∂x = 1`` on ``(0, α)`` and 0 elsewhere, ``∂y/∂α = 1`` where ``x ≥ α`` (the STE rule of
the paper). Each replaced ReLU has its own α (``clip_val``), trained in its own optimizer parameter group
with weight decay ``act_clip_decay`` (the paper regularizes α with L2).

Unlike the original, the model is prepared when the quantization policy first fires (QAT may start
after pruning), a ReLU module shared by two parents is replaced once, and override patterns or settings
that match nothing are errors.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.quantization.quantizer import ParamToQuant, QBits, Quantizer
from distiller.quantization.ste import LinearQuantizeSTE

__all__ = [
    "ClippedLinearQuantization",
    "DorefaParamsBinarizationSTE",
    "DorefaQuantizer",
    "LearnedClippedLinearQuantization",
    "LearnedClippedLinearQuantizeSTE",
    "PACTQuantizer",
    "WRPNQuantizer",
    "dorefa_quantize_param",
    "wrpn_quantize_param",
]

_MIN_CLIP = 1e-8


def _check_clip(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{what} must be a positive number, got {value!r}")
    return float(value)


class ClippedLinearQuantization(nn.Module):
    """Clip to ``[0, clip_val]`` and quantize to ``num_bits`` (``2^num_bits`` levels); replaces a ReLU.

    Args:
        num_bits: bits of the output.
        clip_val: the clipping value (DoReFa and WRPN use 1).
        dequantize: output the on-grid float values (``True``) or the integers.
        inplace: accepted for compatibility (the output is always a new tensor).
    """

    def __init__(self, num_bits: int, clip_val: float, dequantize: bool = True, inplace: bool = False) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.clip_val = _check_clip(clip_val, "clip_val")
        self.scale = (2**num_bits - 1) / self.clip_val
        self.zero_point = 0.0
        self.dequantize = dequantize
        self.inplace = inplace

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        clipped = torch.clamp(input, 0.0, self.clip_val)
        return LinearQuantizeSTE.apply(clipped, self.scale, self.zero_point, self.dequantize, False)

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, clip_val={self.clip_val}, dequantize={self.dequantize}"


class LearnedClippedLinearQuantizeSTE(torch.autograd.Function):
    """PACT: ``apply(input, clip_val, num_bits, dequantize, inplace)``.

    Forward: ``round(clip(x, 0, α)·s)`` (divided by ``s`` when dequantizing) with ``s = (2^k − 1)/α``.
    Backward: ``∂/∂x`` passes where ``0 < x < α``; ``∂/∂α`` is the sum of the output gradient where
    ``x ≥ α``. One comparison per bound, no clones (the original's version was ~2x slower than DoReFa,
    Distiller #260).
    """

    @staticmethod
    def forward(
        ctx: Any, input: torch.Tensor, clip_val: torch.Tensor, num_bits: int, dequantize: bool, inplace: bool
    ) -> torch.Tensor:
        alpha = clip_val.clamp_min(_MIN_CLIP)
        ctx.save_for_backward(input, alpha)
        scale = (2**num_bits - 1) / alpha
        out = torch.round(torch.minimum(torch.relu(input), alpha) * scale)
        if dequantize:
            out = out / scale
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input, alpha = ctx.saved_tensors
        upper = input >= alpha
        # Multiplying by the masks is several times faster than torch.where on CPU for large tensors.
        grad_input = grad_output * ((input > 0) & ~upper)
        grad_alpha = (grad_output * upper).sum().reshape(alpha.shape)
        return grad_input, grad_alpha, None, None, None


class LearnedClippedLinearQuantization(nn.Module):
    """PACT activation: clip to a learned ``[0, clip_val]`` and quantize to ``num_bits``; replaces a ReLU.

    Args:
        num_bits: bits of the output (``2^num_bits`` levels).
        init_act_clip_val: the initial α (the parameter ``clip_val``).
        dequantize: output the on-grid float values (``True``) or the integers.
        inplace: accepted for compatibility (the output is always a new tensor).
    """

    def __init__(self, num_bits: int, init_act_clip_val: float, dequantize: bool = True, inplace: bool = False) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.clip_val = nn.Parameter(torch.tensor([_check_clip(init_act_clip_val, "act_clip_init_val")]))
        self.dequantize = dequantize
        self.inplace = inplace

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return LearnedClippedLinearQuantizeSTE.apply(input, self.clip_val, self.num_bits, self.dequantize, False)

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, clip_val={self.clip_val.detach().item():.4f}, dequantize={self.dequantize}"


# --- weights ---------------------------------------------------------------------------------------


class DorefaParamsBinarizationSTE(torch.autograd.Function):
    """1-bit DoReFa weights: ``sign(w)·mean|w|`` (0 counts as positive); gradient passes straight through."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        mean_abs = input.abs().mean()
        return torch.where(input >= 0, mean_abs, -mean_abs)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return grad_output, None


def dorefa_quantize_param(
    param_fp: torch.Tensor, param_meta: ParamToQuant, scale_weights: bool = False, keep_zeros: bool = False
) -> torch.Tensor:
    """DoReFa weights: ``2·quantize_k(tanh(w)/(2·max|tanh w|) + ½) − 1``; 1 bit: ``sign(w)·mean|w|``.

    ``k``-bit results take at most ``2^k`` distinct values in ``[−1, 1]``. With ``scale_weights`` they
    are multiplied by ``max|tanh w|`` (so they span the float weights' range); with ``keep_zeros``
    weights that are exactly 0 (pruned) stay 0 in the forward pass (the gradient still passes
    straight through, as for the other weights).
    """
    bits = param_meta.num_bits
    if bits == 1:
        out = DorefaParamsBinarizationSTE.apply(param_fp, False)
    else:
        t = torch.tanh(param_fp)
        max_abs = t.abs().max().clamp_min(_MIN_CLIP)
        t = t / (2 * max_abs) + 0.5
        levels = 2**bits - 1
        out = 2 * LinearQuantizeSTE.apply(t, levels, 0.0, True, False) - 1
        if scale_weights:
            out = out * max_abs
    if keep_zeros:
        out = out - (out * (param_fp == 0)).detach()
    return out


def wrpn_quantize_param(param_fp: torch.Tensor, param_meta: ParamToQuant) -> torch.Tensor:
    """WRPN weights: clamp to ``[−1, 1]``, then ``k − 1`` magnitude bits and a sign (``2^k − 1`` values)."""
    steps = 2 ** (param_meta.num_bits - 1) - 1
    return LinearQuantizeSTE.apply(torch.clamp(param_fp, -1.0, 1.0), steps, 0.0, True, False)


# --- quantizers ------------------------------------------------------------------------------------


class _ClippedQuantizer(Quantizer):
    """Shared by DoReFa, PACT and WRPN: float copies, a weight function, ReLU replacement."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        bits_activations: int | None,
        bits_weights: int | None,
        bits_bias: int | None,
        overrides: Mapping[str, Mapping[str, Any] | None] | None,
    ) -> None:
        # float shadow weights trained through quantized ones (STE)
        super().__init__(
            model, optimizer, bits_activations, bits_weights, bits_bias, overrides, train_with_fp_copy=True
        )
        self.replacement_factory[nn.ReLU] = self._replace_relu

    def _device(self) -> torch.device:
        first = next(self.model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def _set_weight_fn(self, scale_weights: bool, keep_pruned_zeros: bool) -> None:
        """DoReFa weights, optionally scaled back to the float weights' range and keeping zeros."""
        for key, value in (("scale_weights", scale_weights), ("keep_pruned_zeros", keep_pruned_zeros)):
            if not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false, got {value!r}")
            self.quantizer_metadata["params"][key] = value
        self.scale_weights = scale_weights
        self.keep_pruned_zeros = keep_pruned_zeros
        if scale_weights or keep_pruned_zeros:
            self.param_quantization_fn = functools.partial(
                dorefa_quantize_param, scale_weights=scale_weights, keep_zeros=keep_pruned_zeros
            )
        else:
            self.param_quantization_fn = dorefa_quantize_param

    def _replace_relu(self, module: nn.Module, name: str, qbits_map: dict[str, QBits]) -> nn.Module:
        bits = qbits_map[name].acts
        if bits is None:
            return module
        return ClippedLinearQuantization(bits, 1.0, dequantize=True, inplace=getattr(module, "inplace", False))

    def _post_prepare_model(self) -> None:
        self.model.to(self._device())
        self.model.train(self.model.training)


class DorefaQuantizer(_ClippedQuantizer):
    """DoReFa-Net (Zhou et al. 2016, arXiv:1606.06160) weights and activations (no gradient quantization).

    Args:
        model: the float model (prepared in place).
        optimizer: the training optimizer.
        bits_activations: bits of the clipped ReLU outputs (``None``: keep ReLUs).
        bits_weights: bits of conv/linear/embedding weights (1: binary).
        bits_bias: bits of biases (``None``: float).
        overrides: ``{module regex: {bits_activations/bits_weights/bits_bias: n or null}}``; first match wins.
        scale_weights: multiply the ``k``-bit weights (``k > 1``) by ``max|tanh w|``, so that they keep
            the float weights' range instead of spanning ``[−1, 1]`` (new). DoReFa's weights are
            scale-free, which batch norm absorbs; in a network without batch norm every layer's gain
            grows by ``1/max|w|`` (about 30x for a 800-input linear layer) and training diverges.
            The number of levels is unchanged.
        keep_pruned_zeros: weights that are exactly 0 (pruned, masked) quantize to 0 (new). DoReFa's
            grid has no 0 (``2i − (2^k − 1)`` is odd), so without this a pruned weight becomes
            ``±1/(2^k − 1)`` and a pruned-then-quantized network computes with dense weights. A pruned
            tensor then takes at most ``2^k + 1`` values (the ``2^k`` levels and 0); an unpruned one is
            unchanged. ``false`` gives the original's behaviour.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        bits_activations: int | None = 32,
        bits_weights: int | None = 32,
        bits_bias: int | None = None,
        overrides: Mapping[str, Mapping[str, Any] | None] | None = None,
        scale_weights: bool = False,
        keep_pruned_zeros: bool = True,
    ) -> None:
        super().__init__(model, optimizer, bits_activations, bits_weights, bits_bias, overrides)
        self._set_weight_fn(scale_weights, keep_pruned_zeros)
        self._check_overrides()


class PACTQuantizer(_ClippedQuantizer):
    """PACT (Choi et al. 2018): DoReFa weights and ReLUs clipped at a learned α, then quantized.

    Args:
        model: the float model (prepared in place).
        optimizer: the training optimizer; the α parameters are added to it as one new parameter
            group when the model is prepared.
        bits_activations, bits_weights, bits_bias, overrides: as :class:`DorefaQuantizer`.
        act_clip_init_val: the initial α of every replaced ReLU (per-module override:
            ``act_clip_init_val``).
        act_clip_decay: weight decay of the α group (``None``: the optimizer's).
        scale_weights: as :class:`DorefaQuantizer` (set it for networks without batch norm).
        keep_pruned_zeros: as :class:`DorefaQuantizer`.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        bits_activations: int | None = 32,
        bits_weights: int | None = 32,
        bits_bias: int | None = None,
        overrides: Mapping[str, Mapping[str, Any] | None] | None = None,
        act_clip_init_val: float = 8.0,
        act_clip_decay: float | None = None,
        scale_weights: bool = False,
        keep_pruned_zeros: bool = True,
    ) -> None:
        super().__init__(model, optimizer, bits_activations, bits_weights, bits_bias, overrides)
        self.act_clip_init_val = _check_clip(act_clip_init_val, "act_clip_init_val")
        if act_clip_decay is not None and (
            isinstance(act_clip_decay, bool) or not isinstance(act_clip_decay, (int, float)) or act_clip_decay < 0
        ):
            raise ConfigError(f"act_clip_decay must be a number >= 0 or null, got {act_clip_decay!r}")
        self.act_clip_decay = act_clip_decay
        self._set_weight_fn(scale_weights, keep_pruned_zeros)
        self.quantizer_metadata["params"].update(act_clip_init_val=act_clip_init_val, act_clip_decay=act_clip_decay)
        self._check_overrides()

    def _replace_relu(  # type: ignore[override]
        self, module: nn.Module, name: str, qbits_map: dict[str, QBits], act_clip_init_val: float | None = None
    ) -> nn.Module:
        bits = qbits_map[name].acts
        if bits is None:
            return module
        init = self.act_clip_init_val if act_clip_init_val is None else act_clip_init_val
        new = LearnedClippedLinearQuantization(bits, init, dequantize=True, inplace=getattr(module, "inplace", False))
        return new.to(self._device())

    def clip_params(self) -> list[nn.Parameter]:
        """The α of every replaced ReLU (each instance once)."""
        seen, out = set(), []
        for module in self.model.modules():
            if isinstance(module, LearnedClippedLinearQuantization) and id(module) not in seen:
                seen.add(id(module))
                out.append(module.clip_val)
        return out

    def _get_new_optimizer_params_groups(self) -> list[dict[str, Any]]:
        group: dict[str, Any] = {"params": self.clip_params()}
        if self.act_clip_decay is not None:
            group["weight_decay"] = self.act_clip_decay
        return [group]


class WRPNQuantizer(_ClippedQuantizer):
    """WRPN (Mishra et al. 2017, arXiv:1709.01134) weights and activations, without layer widening.

    Weights are clamped to ``[−1, 1]`` and quantized symmetrically with ``k − 1`` magnitude bits and a
    sign (so ``bits_weights`` must be at least 2); ReLUs become ``[0, 1]`` clipping with ``k`` bits.
    Arguments as :class:`DorefaQuantizer`.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        bits_activations: int | None = 32,
        bits_weights: int | None = 32,
        bits_bias: int | None = None,
        overrides: Mapping[str, Mapping[str, Any] | None] | None = None,
    ) -> None:
        super().__init__(model, optimizer, bits_activations, bits_weights, bits_bias, overrides)
        for key, bits in (("bits_weights", bits_weights), ("bits_bias", bits_bias)):
            self._check_param_bits("", key, bits)
        self.param_quantization_fn = wrpn_quantize_param
        self._check_overrides(self._check_param_bits)

    @staticmethod
    def _check_param_bits(pattern: str, key: str, bits: int | None) -> None:
        if key != "bits_activations" and bits is not None and bits < 2:
            where = f"overrides.{pattern}.{key}" if pattern else key
            raise ConfigError(
                f"{where}: WRPN weights need at least 2 bits (one is the sign), got {bits}. "
                "Fix: use 2 or more, or DorefaQuantizer for binary weights."
            )
