"""Range-linear quantization-aware training (Jacob et al. 2018, arXiv:1712.05877).

:class:`QuantAwareTrainRangeLinearQuantizer` trains float shadow weights through range-linear
fake-quantized ones and fake-quantizes activations with ranges tracked during training:

* **weights** (and biases with ``bits_bias``): scale and zero-point from the tensor's current min/max
  (per output channel with ``per_channel_wts``, never for embeddings), kept in the module's
  ``<param>_scale`` / ``<param>_zero_point`` buffers; rounding is a straight-through estimator;
* **activations**: every activation module (``ReLU``, ``ReLU6``, ``LeakyReLU``, ``ELU``, ``GELU``,
  ``SiLU``, ``Hardswish``, ``Hardsigmoid``, ``Hardtanh``, ``Tanh``, ``Sigmoid``) is wrapped in a
  :class:`FakeQuantizationWrapper` whose :class:`FakeLinearQuantization` tracks the output's min and
  max with an exponential moving average, bias-corrected (``ema / (1 − decay^t)``) so the first
  steps are not pulled towards 0; values outside the tracked range are clipped (no gradient there);
* **model input** (``quantize_inputs``): a :class:`FakeLinearQuantization` child ``inputs_quant``
  applied by a forward pre-hook on the model (the original patched the model *class*, which changed
  every other instance of it too).

In symmetric modes the outputs of ``ReLU``, ``ReLU6``, ``Sigmoid`` and ``Hardsigmoid`` (never
negative) use the unsigned grid ``[0, 2^k − 1]`` over ``[0, max]``, as the post-training quantizer does
for ReLU-fused outputs; the original kept the signed grid and wasted half of it.

:class:`NCFQuantAwareTrainQuantizer` (for the original's NCF sample) also wraps ``EltwiseMult``,
``Concat`` and ``Linear`` outputs, and does not quantize the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.modules import Concat, EltwiseMult
from distiller.quantization.linear import quantized_range_of
from distiller.quantization.modes import (
    LinearQuantMode,
    ModuleQuantMode,
    is_symmetric,
    verify_linear_quant_mode,
    verify_quant_mode,
)
from distiller.quantization.quantizer import ParamToQuant, QBits, Quantizer, _check_bits

__all__ = [
    "ACTIVATION_TYPES",
    "FakeLinearQuantization",
    "FakeQuantizationWrapper",
    "NCFQuantAwareTrainQuantizer",
    "QuantAwareTrainRangeLinearQuantizer",
    "update_ema",
]

#: Activation modules wrapped by :class:`QuantAwareTrainRangeLinearQuantizer`.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Tanh,
    nn.Sigmoid,
)
_NON_NEGATIVE = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid)


def update_ema(
    biased_ema: torch.Tensor, value: torch.Tensor, decay: torch.Tensor | float, step: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One EMA step: ``(biased, unbiased)`` with ``biased = decay·biased + (1 − decay)·value`` and
    ``unbiased = biased / (1 − decay^step)`` (``step`` counts from 1)."""
    biased = biased_ema * decay + (1 - decay) * value
    return biased, biased / (1 - decay**step)


def _range_qparams(
    num_bits: int, mode: LinearQuantMode, low: torch.Tensor, high: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~distiller.quantization.linear.quant_params_for_range` for ranges already containing 0,
    without its input checks (they synchronize with the GPU, and this runs at every step)."""
    if is_symmetric(mode):
        n = 2 ** (num_bits - 1) - 1 if mode == LinearQuantMode.SYMMETRIC_RESTRICTED else (2**num_bits - 1) / 2
        sat = torch.maximum(low.abs(), high.abs())
        scale = torch.where(sat > 0, n / sat.clamp_min(1e-30), torch.ones_like(sat))
        return scale, torch.zeros_like(scale)
    diff = high - low
    scale = torch.where(diff > 0, (2**num_bits - 1) / diff.clamp_min(1e-30), torch.ones_like(diff))
    zero_point = torch.round(scale * low)
    if mode == LinearQuantMode.ASYMMETRIC_SIGNED:
        zero_point = zero_point + 2 ** (num_bits - 1)
    return scale, zero_point


def _fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """``(clamp(round(scale·x − zp), qmin, qmax) + zp) / scale`` in the forward pass, ``x`` in the backward."""
    q = torch.clamp(torch.round(scale * x - zero_point), qmin, qmax)
    out = (q + zero_point) / scale
    return x + (out - x).detach()


class FakeLinearQuantization(nn.Module):
    """Fake-quantize a tensor on a range tracked by a bias-corrected EMA of its min and max.

    In training mode every call updates the tracked range and the ``scale``/``zero_point`` buffers; in
    evaluation mode they are used as they are. All state is in buffers (saved with the model).

    Args:
        num_bits: bits of the grid.
        mode: a :class:`LinearQuantMode` (or its name).
        ema_decay: the EMA's decay.
        dequantize: output on-grid float values (``True``) or integers.
        inplace: accepted for compatibility (the output is always a new tensor).
        half_range: the input is never negative: symmetric modes use the unsigned grid over ``[0, max]``.
    """

    def __init__(
        self,
        num_bits: int = 8,
        mode: LinearQuantMode | str = LinearQuantMode.SYMMETRIC,
        ema_decay: float = 0.999,
        dequantize: bool = True,
        inplace: bool = False,
        half_range: bool = False,
    ) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.mode = verify_linear_quant_mode(mode)
        self.dequantize = dequantize
        self.inplace = inplace
        self.half_range = half_range and is_symmetric(self.mode)
        if self.half_range:
            self.qmin, self.qmax = 0, 2**num_bits - 1
        else:
            self.qmin, self.qmax = quantized_range_of(num_bits, self.mode)
        self.register_buffer("ema_decay", torch.tensor(float(ema_decay)))
        self.register_buffer("tracked_min_biased", torch.zeros(1))
        self.register_buffer("tracked_min", torch.zeros(1))
        self.register_buffer("tracked_max_biased", torch.zeros(1))
        self.register_buffer("tracked_max", torch.zeros(1))
        self.register_buffer("iter_count", torch.zeros(1))
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("zero_point", torch.zeros(1))

    @torch.no_grad()
    def _track(self, input: torch.Tensor) -> None:
        current_min, current_max = torch.aminmax(input.detach().float())
        self.iter_count += 1
        biased, unbiased = update_ema(self.tracked_min_biased, current_min, self.ema_decay, self.iter_count)
        self.tracked_min_biased.copy_(biased)
        self.tracked_min.copy_(unbiased)
        biased, unbiased = update_ema(self.tracked_max_biased, current_max, self.ema_decay, self.iter_count)
        self.tracked_max_biased.copy_(biased)
        self.tracked_max.copy_(unbiased)
        low, high = self.float_range()
        mode = LinearQuantMode.ASYMMETRIC_UNSIGNED if self.half_range else self.mode
        scale, zero_point = _range_qparams(self.num_bits, mode, low, high)
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)

    def float_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The float range inputs are clipped to."""
        low, high = torch.minimum(self.tracked_min, torch.zeros_like(self.tracked_min)), self.tracked_max.clamp_min(0)
        if self.half_range:
            return torch.zeros_like(high), high
        if is_symmetric(self.mode):
            max_abs = torch.maximum(low.abs(), high)
            return -max_abs, max_abs
        return low, high

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._track(input)
        low, high = self.float_range()
        clipped = torch.clamp(input, low.to(input.dtype), high.to(input.dtype))
        out = _fake_quantize(clipped, self.scale, self.zero_point, self.qmin, self.qmax)
        if not self.dequantize:
            out = torch.round(self.scale * out - self.zero_point)
        return out

    def extra_repr(self) -> str:
        return (
            f"num_bits={self.num_bits}, mode={self.mode.name}, ema_decay={float(self.ema_decay):.4f}, "
            f"half_range={self.half_range}, tracked=[{float(self.tracked_min):.4f}, {float(self.tracked_max):.4f}]"
        )


class FakeQuantizationWrapper(nn.Module):
    """Run ``wrapped_module``, then fake-quantize its output (:class:`FakeLinearQuantization`)."""

    def __init__(
        self,
        wrapped_module: nn.Module,
        num_bits: int,
        quant_mode: LinearQuantMode | str,
        ema_decay: float,
        half_range: bool = False,
    ) -> None:
        super().__init__()
        self.wrapped_module = wrapped_module
        self.fake_q = FakeLinearQuantization(
            num_bits,
            quant_mode,
            ema_decay,
            dequantize=True,
            inplace=getattr(wrapped_module, "inplace", False),
            half_range=half_range,
        )

    def forward(self, *input: Any) -> torch.Tensor:
        return self.fake_q(self.wrapped_module(*input))


def _quantize_model_inputs(model: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook of the model: fake-quantize the first positional input."""
    if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
        return None
    return (model.inputs_quant(args[0]), *args[1:])


def _weights_per_channel(module: nn.Module, param: torch.Tensor, per_channel: bool) -> bool:
    return per_channel and not isinstance(module, nn.Embedding) and param.dim() >= 2


class QuantAwareTrainRangeLinearQuantizer(Quantizer):
    """Range-linear QAT: EMA-tracked activation ranges, min/max weight ranges, STE rounding.

    Args:
        model: the float model (prepared in place).
        optimizer: the training optimizer (this quantizer adds no learned parameters).
        bits_activations, bits_weights, bits_bias: bit widths (``None``: keep float).
        overrides: ``{module regex: {bits_*: n or null}}``; first match wins.
        mode: a :class:`LinearQuantMode` name for both, or ``{activations: ..., weights: ...}``.
        ema_decay: decay of the activation-range EMA.
        per_channel_wts: one weight range per output channel.
        quantize_inputs: fake-quantize the model's input too.
        num_bits_inputs: bits of the input (default ``bits_activations``).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        bits_activations: int | None = 32,
        bits_weights: int | None = 32,
        bits_bias: int | None = 32,
        overrides: Mapping[str, Mapping[str, Any] | None] | None = None,
        mode: Any = LinearQuantMode.SYMMETRIC,
        ema_decay: float = 0.999,
        per_channel_wts: bool = False,
        quantize_inputs: bool = True,
        num_bits_inputs: int | None = None,
    ) -> None:
        # float shadow weights trained through quantized ones (STE)
        super().__init__(
            model, optimizer, bits_activations, bits_weights, bits_bias, overrides, train_with_fp_copy=True
        )
        self.mode: ModuleQuantMode = verify_quant_mode(mode)
        if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) or not 0 < ema_decay < 1:
            raise ConfigError(f"ema_decay must be a number in (0, 1), e.g. 0.999; got {ema_decay!r}")
        self.ema_decay = float(ema_decay)
        self.per_channel_wts = bool(per_channel_wts)
        self.quantize_inputs = bool(quantize_inputs)
        self.num_bits_inputs = _check_bits(num_bits_inputs, "num_bits_inputs") or bits_activations
        self.quantizer_metadata["params"].update(
            mode={"activations": self.mode.activations.name, "weights": self.mode.weights.name},
            ema_decay=self.ema_decay,
            per_channel_wts=self.per_channel_wts,
            quantize_inputs=self.quantize_inputs,
            num_bits_inputs=num_bits_inputs,
        )
        self.param_quantization_fn = self._linear_quantize_param
        for cls in ACTIVATION_TYPES:
            self.replacement_factory[cls] = self._wrap_activation
        self._check_overrides()

    def _device(self) -> torch.device:
        first = next(self.model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def _wrap_activation(self, module: nn.Module, name: str, qbits_map: dict[str, QBits]) -> nn.Module:
        bits = qbits_map[name].acts
        if bits is None:
            return module
        half = isinstance(module, _NON_NEGATIVE)
        wrapper = FakeQuantizationWrapper(module, bits, self.mode.activations, self.ema_decay, half_range=half)
        return wrapper.to(self._device())

    def _weight_qparams(self, module: nn.Module, param: torch.Tensor, num_bits: int) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            data = param.detach()
            if _weights_per_channel(module, data, self.per_channel_wts):
                flat = data.reshape(data.shape[0], -1)
                low, high = flat.amin(dim=1).clamp(max=0), flat.amax(dim=1).clamp(min=0)
                scale, zero_point = _range_qparams(num_bits, self.mode.weights, low, high)
                shape = (-1,) + (1,) * (data.dim() - 1)
                return scale.reshape(shape), zero_point.reshape(shape)
            low, high = torch.aminmax(data)
            return _range_qparams(num_bits, self.mode.weights, low.clamp(max=0), high.clamp(min=0))

    def _linear_quantize_param(self, param_fp: torch.Tensor, param_meta: ParamToQuant) -> torch.Tensor:
        module = param_meta.module
        scale, zero_point = self._weight_qparams(module, param_fp, param_meta.num_bits)
        scale, zero_point = scale.to(param_fp.dtype), zero_point.to(param_fp.dtype)
        for suffix, value in (("_scale", scale), ("_zero_point", zero_point)):
            key = param_meta.q_attr_name + suffix
            buf = module._buffers.get(key)
            if buf is not None and buf.shape == value.shape:
                buf.copy_(value)
            else:
                module._buffers[key] = value.clone()
        qmin, qmax = quantized_range_of(param_meta.num_bits, self.mode.weights)
        return _fake_quantize(param_fp, scale, zero_point, qmin, qmax)

    def _post_prepare_model(self) -> None:
        device = self._device()
        for ptq in self.params_to_quantize:  # scale/zero-point buffers exist from the start (saved with the model)
            module = ptq.module
            scale, zero_point = self._weight_qparams(module, getattr(module, ptq.fp_attr_name), ptq.num_bits)
            module.register_buffer(ptq.q_attr_name + "_scale", torch.ones_like(scale))
            module.register_buffer(ptq.q_attr_name + "_zero_point", torch.zeros_like(zero_point))
        if self.quantize_inputs and self.num_bits_inputs is not None:
            target = self.model.module if isinstance(self.model, nn.DataParallel) else self.model
            target.inputs_quant = FakeLinearQuantization(
                self.num_bits_inputs, self.mode.activations, self.ema_decay
            ).to(device)
            target.register_forward_pre_hook(_quantize_model_inputs)
        self.model.train(self.model.training)


class NCFQuantAwareTrainQuantizer(QuantAwareTrainRangeLinearQuantizer):
    """:class:`QuantAwareTrainRangeLinearQuantizer` for the original's NCF sample: also fake-quantizes
    the outputs of ``EltwiseMult``, ``Concat`` and ``Linear`` modules; the input is not quantized."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        bits_activations: int | None = 32,
        bits_weights: int | None = 32,
        bits_bias: int | None = 32,
        overrides: Mapping[str, Mapping[str, Any] | None] | None = None,
        mode: Any = LinearQuantMode.SYMMETRIC,
        ema_decay: float = 0.999,
        per_channel_wts: bool = False,
    ) -> None:
        super().__init__(
            model,
            optimizer=optimizer,
            bits_activations=bits_activations,
            bits_weights=bits_weights,
            bits_bias=bits_bias,
            overrides=overrides,
            mode=mode,
            ema_decay=ema_decay,
            per_channel_wts=per_channel_wts,
            quantize_inputs=False,
        )
        for cls in (EltwiseMult, Concat, nn.Linear):
            self.replacement_factory[cls] = self._wrap_activation
