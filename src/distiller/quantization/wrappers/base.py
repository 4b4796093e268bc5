"""The range-linear quantized wrapper: integer arithmetic simulated on float tensors.

A wrapper replaces one module of an evaluation-mode model. It quantizes its inputs, runs the
module's computation on the integers (held in float tensors, as the original did), re-quantizes the
result to the output's parameters and returns it dequantized, so the rest of the model sees floats.
The dequantized output carries :class:`TensorQuantMetadata`: a following wrapper uses those
parameters instead of quantizing a second time.

Every wrapper also has a *deployment* form (``deploy = True``, set by the ONNX exporter): the same
computation written as ONNX ``DequantizeLinear`` → float operator → ``QuantizeLinear``, with the very
scales and zero points of the simulation, which ONNX Runtime runs with integer kernels.

Static mode (calibration statistics given) fixes every scale at construction and keeps them as
buffers (``output_scale``, ``output_zero_point``, ``in0_scale``, ...). Dynamic mode computes them
from each batch; it cannot be deployed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from distiller.errors import QuantizationError
from distiller.quantization.linear import (
    get_quantized_range,
    linear_dequantize,
)
from distiller.quantization.modes import ClipMode, LinearQuantMode, is_symmetric
from distiller.quantization.onnx_ops import as_constant, fake_quantize_linear, onnx_qparams
from distiller.quantization.scale_approx import approx_scale_as_mult_and_shift
from distiller.quantization.settings import (
    QuantSettings,
    TensorQuantMetadata,
    params_from_stats,
    params_from_tensor,
)

__all__ = ["QuantizedInput", "RangeLinearQuantWrapper", "activation_onnx_qparams"]


class QuantizedInput:
    """One input of a wrapper after quantization: integer values and their parameters."""

    __slots__ = ("q", "scale", "zero_point", "from_metadata", "float_value")

    def __init__(self, q, scale, zero_point, from_metadata, float_value):  # noqa: ANN001
        self.q = q
        self.scale = scale
        self.zero_point = zero_point
        self.from_metadata = from_metadata
        self.float_value = float_value


def activation_onnx_qparams(
    scale: torch.Tensor, zero_point: torch.Tensor, settings: QuantSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX parameters of an activation: always ``uint8`` (ONNX Runtime's fast path on x86).

    Signed Distiller values (symmetric and ``asym_s`` modes) move up by ``2^(bits-1)``, an exact
    change of representation.
    """
    return onnx_qparams(scale, zero_point, _activation_offset(settings), torch.uint8)


def _activation_offset(settings: QuantSettings) -> int:
    return 0 if settings.mode == LinearQuantMode.ASYMMETRIC_UNSIGNED else 2 ** (settings.num_bits - 1)


class RangeLinearQuantWrapper(nn.Module):
    """Base class: input/output quantization around ``quantized_forward`` (see the module docstring).

    Args:
        wrapped_module: the module to quantize (kept as ``wrapped_module``).
        num_bits_acts: bits of inputs and output.
        num_bits_accum: bits of the signed integer accumulator.
        mode: the activations' :class:`LinearQuantMode`.
        clip_acts: how the output range is clipped (:class:`ClipMode`).
        activation_stats: this module's calibration statistics (``{'inputs': {i: ...}, 'output': ...}``);
            ``None`` selects dynamic mode.
        clip_n_stds: for ``ClipMode.N_STD``.
        clip_half_range: the output is known non-negative (a ReLU follows): use ``[0, max]``.
        scale_approx_mult_bits: approximate re-quantization scales by an integer multiplier of this
            many bits and a shift (as integer hardware does).
        input_overrides: per input index, ``{'from_output': True}`` or settings
            (``bits_activations``, ``mode``, ``clip_acts``, ``clip_n_stds``) for that input.
        inputs_quant_auto_fallback: quantize an input that has no statistics with the output's parameters.
    """

    #: input indices whose statistics are needed (None: all the statistics file has)
    def __init__(
        self,
        wrapped_module: nn.Module,
        num_bits_acts: int,
        num_bits_accum: int = 32,
        mode: LinearQuantMode = LinearQuantMode.SYMMETRIC,
        clip_acts: ClipMode = ClipMode.NONE,
        activation_stats: dict[str, Any] | None = None,
        clip_n_stds: float | None = None,
        clip_half_range: bool = False,
        scale_approx_mult_bits: int | None = None,
        input_overrides: dict[int, dict[str, Any]] | None = None,
        inputs_quant_auto_fallback: bool = True,
    ) -> None:
        super().__init__()
        self.wrapped_module = wrapped_module
        self.input_settings_default = QuantSettings(num_bits_acts, mode, clip_acts, clip_n_stds)
        if clip_half_range and is_symmetric(mode):
            # A ReLU-fused output is non-negative: use the whole unsigned range [0, 2^b - 1] with a
            # zero point of 0 (the original kept the signed range and wasted its negative half).
            mode = LinearQuantMode.ASYMMETRIC_UNSIGNED
        self.output_settings = QuantSettings(num_bits_acts, mode, clip_acts, clip_n_stds, clip_half_range)
        self.num_bits_accum = num_bits_accum
        self.accum_min_q_val, self.accum_max_q_val = get_quantized_range(num_bits_accum, signed=True)
        self.scale_approx_mult_bits = scale_approx_mult_bits
        self.inputs_quant_auto_fallback = inputs_quant_auto_fallback
        self.input_overrides = {int(k): dict(v) for k, v in (input_overrides or {}).items()}
        self.preset_act_qparams = activation_stats is not None
        self.deploy = False
        self.input_settings: dict[int, QuantSettings] = {}
        if activation_stats is not None:
            self._init_static(activation_stats)

    # -- construction ------------------------------------------------------------------------
    def _settings_for_input(self, idx: int) -> QuantSettings:
        over = self.input_overrides.get(idx, {})
        from distiller.quantization.modes import verify_clip_mode, verify_quant_mode

        base = self.input_settings_default
        if "bits_activations" in over:
            base = base.with_(num_bits=int(over["bits_activations"]))
        if "mode" in over:
            base = base.with_(mode=verify_quant_mode(over["mode"]).activations)
        if "clip_acts" in over:
            base = base.with_(clip_mode=verify_clip_mode(over["clip_acts"]))
        if "clip_n_stds" in over:
            base = base.with_(clip_n_stds=float(over["clip_n_stds"]))
        return base

    def _init_static(self, stats: dict[str, Any]) -> None:
        if "output" not in stats:
            raise QuantizationError(f"the statistics of {type(self.wrapped_module).__name__} have no 'output' entry")
        scale, zp = params_from_stats(self.output_settings, stats["output"])
        self.register_buffer("output_scale", scale)
        self.register_buffer("output_zero_point", zp)
        for idx, entry in (stats.get("inputs") or {}).items():
            idx = int(idx)
            if self.input_overrides.get(idx, {}).get("from_output"):
                continue
            settings = self._settings_for_input(idx)
            self.input_settings[idx] = settings
            scale, zp = params_from_stats(settings, entry)
            self.register_buffer(f"in{idx}_scale", scale)
            self.register_buffer(f"in{idx}_zero_point", zp)

    # -- input quantization ------------------------------------------------------------------
    def _input_params(self, idx: int, x: torch.Tensor):  # noqa: ANN202
        """``(scale, zero_point, settings, from_metadata)`` for input ``idx``.

        ``settings`` is the integer range ``(min, max)`` when the parameters come from the tensor's
        metadata (the producer quantized it already).
        """
        over = self.input_overrides.get(idx, {})
        if over.get("from_output"):
            return (*self._output_params_or_fail(), self.output_settings, False)
        meta = getattr(x, "quant_metadata", None)
        if meta is not None and not over:
            return meta.scale, meta.zero_point, (meta.min_q_val, meta.max_q_val), True
        if self.preset_act_qparams:
            if idx in self.input_settings:
                return (
                    getattr(self, f"in{idx}_scale"),
                    getattr(self, f"in{idx}_zero_point"),
                    self.input_settings[idx],
                    False,
                )
            if self.inputs_quant_auto_fallback:
                return self.output_scale, self.output_zero_point, self.output_settings, False
            raise QuantizationError(
                f"input {idx} of {type(self.wrapped_module).__name__} has no statistics: collect them, "
                "give 'input_overrides', or set inputs_quant_auto_fallback"
            )
        settings = self._settings_for_input(idx)
        scale, zp = params_from_tensor(settings, x.detach())
        return scale, zp, settings, False

    def _output_params_or_fail(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.preset_act_qparams:
            raise QuantizationError("'from_output' input overrides need calibration statistics (static mode)")
        return self.output_scale, self.output_zero_point

    def quantize_inputs(self, inputs: tuple[torch.Tensor, ...]) -> list[QuantizedInput]:
        out = []
        for idx, x in enumerate(inputs):
            scale, zp, settings, from_meta = self._input_params(idx, x)
            low, high = settings if from_meta else settings.q_range
            q = quantize_as_onnx(x, scale, zp, low, high)
            out.append(QuantizedInput(q, scale, zp, from_meta, x))
        return out

    # -- forward -----------------------------------------------------------------------------
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise QuantizationError(
                f"{type(self).__name__} is for evaluation only: call model.eval() (quantization-aware "
                "training uses the QAT quantizers)"
            )
        if self.deploy:
            return self._deploy_forward(inputs)
        q_inputs = self.quantize_inputs(inputs)
        out_q, out_scale, out_zp = self.quantized_forward(q_inputs)
        out = linear_dequantize(out_q, out_scale, out_zp)
        out.quant_metadata = TensorQuantMetadata(out_scale, out_zp, *self.output_settings.q_range)
        return out

    def quantized_forward(self, inputs: list[QuantizedInput]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Integer computation: returns ``(output_q, output_scale, output_zero_point)``."""
        raise NotImplementedError

    def output_params_for(self, fp_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Static: the stored parameters; dynamic: computed from the float output."""
        if self.preset_act_qparams:
            return self.output_scale, self.output_zero_point
        return params_from_tensor(self.output_settings, fp_output.detach())

    def requantize(
        self, accum: torch.Tensor, accum_scales: list[torch.Tensor], out_scale: torch.Tensor, out_zp: torch.Tensor
    ) -> torch.Tensor:
        """Integers whose scale is the product of ``accum_scales`` → integers at the output's parameters.

        The multiplier is formed from the ONNX (float32, dividing) scales in ONNX Runtime's order,
        ``s_in1 * s_in2 / s_out``, so simulation and deployment round alike.
        """
        multiplier = functools.reduce(torch.mul, [onnx_scale(s) for s in accum_scales]) / onnx_scale(out_scale)
        if self.scale_approx_mult_bits is not None:
            multiplier = approx_scale_as_mult_and_shift(multiplier, self.scale_approx_mult_bits)
        low, high = self.output_settings.q_range
        return torch.clamp(torch.round(accum * multiplier) - out_zp, low, high)

    # -- deployment --------------------------------------------------------------------------
    def _deploy_forward(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The ONNX form: dequantized inputs → float op → QuantizeLinear/DequantizeLinear."""
        if not self.preset_act_qparams:
            raise QuantizationError(
                "dynamic-mode quantization cannot be deployed: its scales change with every batch. "
                "Calibrate (--qe-calibration, or pass statistics) to get a static model."
            )
        deq = []
        for idx, x in enumerate(inputs):
            scale, zp, settings, from_meta = self._input_params(idx, x)
            deq.append(x if from_meta else fake_quantize_activation(x, scale, zp, settings))
        out = self.deploy_forward(deq)
        result = fake_quantize_activation(out, self.output_scale, self.output_zero_point, self.output_settings)
        result.quant_metadata = TensorQuantMetadata(
            self.output_scale, self.output_zero_point, *self.output_settings.q_range
        )
        return result

    def deploy_forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The float operation on dequantized inputs (weights as ``DequantizeLinear`` of integers)."""
        raise NotImplementedError

    # -- parameters (LAPQ, reports) ----------------------------------------------------------
    def named_linear_quant_params(self, filter: bool = False) -> Iterator[tuple[str, torch.Tensor]]:  # noqa: A002
        """The scales and zero points of this wrapper, by buffer name."""
        for name, buf in self.named_buffers(recurse=False):
            if name.endswith(("_scale", "_zero_point")):
                yield name, buf

    def set_linear_quant_param(self, name: str, value: torch.Tensor | float) -> None:
        """Overwrite one scale or zero point (LAPQ)."""
        buf = getattr(self, name, None)
        if not isinstance(buf, torch.Tensor) or name not in dict(self.named_buffers(recurse=False)):
            raise QuantizationError(f"{type(self).__name__} has no quantization parameter {name!r}")
        buf.data.copy_(
            torch.as_tensor(value, dtype=buf.dtype).expand_as(buf)
            if buf.dim()
            else torch.as_tensor(value, dtype=buf.dtype)
        )

    def update_linear_quant_params(self, params: dict[str, Any]) -> None:
        for name, value in params.items():
            self.set_linear_quant_param(name, value)

    def extra_repr(self) -> str:
        s = self.output_settings
        kind = "static" if self.preset_act_qparams else "dynamic"
        return (
            f"mode={s.mode.name}, num_bits_acts={s.num_bits}, num_bits_accum={self.num_bits_accum}, "
            f"clip_acts={s.clip_mode.name}, clip_half_range={s.clip_half_range}, {kind}"
        )


def quantize_as_onnx(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, low: int, high: int
) -> torch.Tensor:
    """Distiller's ``clamp(round(scale * x - zp))``, computed as ONNX's ``QuantizeLinear`` does it.

    ONNX divides by its own float32 scale (``1 / scale``); dividing here too makes the simulation
    round exactly like the deployed model where the two products differ in the last bit.
    """
    return torch.clamp(torch.round(x / onnx_scale(scale)) - zero_point, low, high)


def onnx_scale(scale: torch.Tensor) -> torch.Tensor:
    """ONNX's float32 scale (it divides) for Distiller's scale (it multiplies)."""
    return (1.0 / scale.double()).float()


def fake_quantize_activation(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, settings: QuantSettings
) -> torch.Tensor:
    """ONNX ``QuantizeLinear``→``DequantizeLinear`` of an activation, limited to the mode's range.

    With fewer than 8 bits (or a restricted range) the 8-bit ONNX type is wider than Distiller's
    range: a ``Clip`` in front keeps the values inside it (ONNX Runtime then cannot fuse the
    producer into an integer kernel; 8-bit unrestricted modes need no clip).
    """
    onnx_scale, onnx_zp = activation_onnx_qparams(scale, zero_point, settings)
    low, high = settings.q_range
    offset = _activation_offset(settings)
    if (low + offset, high + offset) != (0, 255):
        lo = float(((low + offset) - onnx_zp.double()) * onnx_scale.double())
        hi = float(((high + offset) - onnx_zp.double()) * onnx_scale.double())
        x = torch.clamp(x, lo, hi)
    return fake_quantize_linear(x, as_constant(onnx_scale), as_constant(onnx_zp))
