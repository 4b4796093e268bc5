"""Learned Step Size Quantization (LSQ; Esser et al., ICLR 2020, arXiv:1902.08153).

Weights and activations are quantized on a uniform grid whose step size ``s`` is a trained parameter:

    v̂ = round(clip(v / s, Q_N, Q_P)) · s

* rounding passes the gradient straight through (STE); clipping passes it only inside
  ``[Q_N·s, Q_P·s]``, so ``∂v̂/∂v = 1`` there and 0 outside;
* ``∂v̂/∂s = round(v/s) − v/s`` inside the range, ``Q_N`` below it and ``Q_P`` above it;
* the step size's gradient is multiplied by ``g = 1 / sqrt(N · Q_P)`` (``N``: the number of weights
  of the layer, per output channel with ``per_channel_wts``; for activations the number of features
  of one sample), which keeps the step-size updates in proportion to the weight updates;
* weights (and biases with ``bits_bias``) are signed: ``[Q_N, Q_P] = [−2^(b−1), 2^(b−1) − 1]``
  (``b ≥ 2``); their step size starts at ``2·mean|w| / sqrt(Q_P)`` when the model is prepared;
* activations after a ``ReLU`` are unsigned, ``[0, 2^b − 1]``: every ``nn.ReLU`` is *replaced* by an
  :class:`LSQActivationQuantization` (clipping at 0 is the ReLU); ``ReLU6``, ``Sigmoid`` and
  ``Hardsigmoid`` outputs are wrapped unsigned, the other activation modules of
  :data:`~distiller.quantization.range_linear_qat.ACTIVATION_TYPES` (``LeakyReLU``, ``ELU``, ``GELU``,
  ``SiLU``, ``Hardswish``, ``Hardtanh``, ``Tanh``), whose outputs can be negative, are wrapped signed.
  An activation's step size starts at ``2·mean|v| / sqrt(Q_P)`` of the first batch it sees (``v``: the
  values it quantizes, i.e. after the ReLU for a replaced ReLU; the
  ``initialized`` buffer records it, so a resumed run does not initialize again).

As in the other QAT quantizers, the float weights stay ``float_<name>`` parameters trained through the
quantized ones (see :mod:`distiller.quantization.quantizer`), and the model is prepared in place.
Step sizes are parameters (``<name>_step`` on each quantized layer, ``step`` in each activation
quantizer); they are added to the optimizer as one new parameter group with weight decay 0 (decaying a
step size would shrink the quantization range for no reason).

Differences from the paper: the first and last layers are not special-cased (use ``overrides``, e.g.
``{"conv1|fc": {"bits_weights": 8, "bits_activations": 8}}``); activations are quantized where they
are produced (at activation modules), not at the inputs of every convolution, as the other QAT
quantizers of this package do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.quantization.quantizer import ParamToQuant, QBits, Quantizer
from distiller.quantization.range_linear_qat import ACTIVATION_TYPES

__all__ = [
    "LSQActivationQuantization",
    "LSQQuantizeSTE",
    "LSQQuantizer",
    "LSQWrapper",
    "STEP_SUFFIX",
    "lsq_grad_scale",
    "lsq_init_step",
    "lsq_quantize",
    "lsq_range",
]

_MIN_STEP = 1e-8
#: Activation modules whose output is never negative (quantized on the unsigned grid).
_NON_NEGATIVE = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid)
#: The step-size parameter of a quantized parameter ``<name>`` is ``<name>_step``.
STEP_SUFFIX = "_step"


def lsq_range(num_bits: int, signed: bool) -> tuple[int, int]:
    """``(Q_N, Q_P)``: ``(−2^(b−1), 2^(b−1) − 1)`` signed, ``(0, 2^b − 1)`` unsigned."""
    if signed:
        if num_bits < 2:
            raise ConfigError(
                f"LSQ: a signed {num_bits}-bit grid has no positive level. Fix: use at least 2 bits for weights "
                "and for activations that can be negative."
            )
        return -(2 ** (num_bits - 1)), 2 ** (num_bits - 1) - 1
    return 0, 2**num_bits - 1


def lsq_grad_scale(num_elements: int, qp: int) -> float:
    """The step-size gradient scale ``g = 1 / sqrt(N · Q_P)``."""
    return 1.0 / math.sqrt(max(num_elements, 1) * qp)


def lsq_init_step(values: torch.Tensor, qp: int, dim: int | None = None) -> torch.Tensor:
    """``2·mean|v| / sqrt(Q_P)`` (per slice along ``dim`` when given, shaped to broadcast against ``values``).

    A tensor that is all zeros gets step 1 (any positive value quantizes it exactly).
    """
    v = values.detach().abs().float()
    if dim is None:
        mean = v.mean().reshape(1)
    else:
        mean = v.transpose(0, dim).reshape(v.shape[dim], -1).mean(dim=1)
        shape = [1] * values.dim()
        shape[dim] = -1
        mean = mean.reshape(shape)
    step = 2 * mean / math.sqrt(qp)
    return torch.where(step > 0, step, torch.ones_like(step)).to(values.dtype)


class LSQQuantizeSTE(torch.autograd.Function):
    """``apply(input, step, qn, qp, grad_scale)``: ``round(clip(input/step, qn, qp))·step``.

    Backward (Esser et al. 2020, section 2): ``∂/∂input`` passes where ``qn ≤ input/step ≤ qp``;
    ``∂/∂step`` is ``round(v/s) − v/s`` inside, ``qn`` below and ``qp`` above, summed to the step's
    shape (a per-channel step broadcasts) and multiplied by ``grad_scale``. The step is clamped to
    ``≥ 1e-8`` in the forward pass (its gradient still flows, so a step pushed below recovers).
    """

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, step: torch.Tensor, qn: int, qp: int, grad_scale: float) -> torch.Tensor:
        s = step.detach().clamp_min(_MIN_STEP).to(input.dtype)
        scaled = input / s
        clipped = scaled.clamp(qn, qp)
        q = clipped.round()
        out = q * s
        need_input, need_step = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if need_input or need_step:
            inside = clipped == scaled
            ds = q - scaled * inside if need_step else None
            ctx.save_for_backward(inside, ds)
            ctx.grad_scale = grad_scale
            ctx.step_shape = step.shape
            ctx.step_dtype = step.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inside, ds = ctx.saved_tensors
        grad_input = grad_step = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output * inside  # faster than torch.where(inside, grad_output, 0) on CPU
        if ctx.needs_input_grad[1]:
            if ctx.step_shape.numel() == 1:  # one fused reduction, no temporary
                grad_step = torch.dot(grad_output.reshape(-1), ds.reshape(-1)).reshape(ctx.step_shape)
            else:
                grad_step = (grad_output * ds).sum_to_size(ctx.step_shape)
            grad_step = (grad_step * ctx.grad_scale).to(ctx.step_dtype)
        return grad_input, grad_step, None, None, None


def lsq_quantize(
    input: torch.Tensor, step: torch.Tensor, qn: int, qp: int, grad_scale: float | None = None
) -> torch.Tensor:
    """Fake-quantize ``input`` with the learned ``step`` (:class:`LSQQuantizeSTE`).

    ``grad_scale`` defaults to ``1 / sqrt(N · Q_P)`` with ``N`` the number of elements per step value.
    """
    if grad_scale is None:
        grad_scale = lsq_grad_scale(input.numel() // max(step.numel(), 1), qp)
    return LSQQuantizeSTE.apply(input, step, qn, qp, grad_scale)


class LSQActivationQuantization(nn.Module):
    """An LSQ activation quantizer with a learned step size (the parameter ``step``).

    Unsigned (``signed=False``) it computes ``round(clip(x/s, 0, 2^b − 1))·s``, which includes the
    ReLU: :class:`LSQQuantizer` replaces ``nn.ReLU`` modules by it. The step is initialized from the
    first batch it sees (``2·mean|v| / sqrt(Q_P)`` of the values it quantizes, :meth:`init_step`);
    ``initialized`` is a buffer, so a loaded checkpoint keeps its trained step. The gradient scale
    uses the number of features of one sample.

    Args:
        num_bits: bits of the output grid.
        signed: grid ``[−2^(b−1), 2^(b−1) − 1]`` instead of ``[0, 2^b − 1]``.
        dequantize: output on-grid float values (``True``) or the integers.
        inplace: accepted for compatibility (the output is always a new tensor).
    """

    def __init__(self, num_bits: int, signed: bool = False, dequantize: bool = True, inplace: bool = False) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.signed = signed
        self.qn, self.qp = lsq_range(num_bits, signed)
        self.dequantize = dequantize
        self.inplace = inplace
        self.step = nn.Parameter(torch.ones(1))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self._init_checked = False  # cache of ``initialized`` (reading the buffer would sync a GPU every step)

    @torch.no_grad()
    def init_step(self, input: torch.Tensor) -> None:
        """Set the step from ``input`` and mark it initialized.

        ``2·mean|v| / sqrt(Q_P)`` of the values to quantize: on the unsigned grid those are
        ``relu(input)`` (a replaced ReLU sees its input), on the signed grid ``input`` itself.
        """
        values = input if self.signed else torch.relu(input)
        self.step.copy_(lsq_init_step(values, self.qp).to(self.step))
        self.initialized.fill_(True)
        self._init_checked = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self._init_checked:
            if bool(self.initialized):
                self._init_checked = True
            else:
                self.init_step(input)
        features = input[0].numel() if input.dim() > 1 else input.numel()
        out = LSQQuantizeSTE.apply(input, self.step, self.qn, self.qp, lsq_grad_scale(features, self.qp))
        if not self.dequantize:
            out = torch.round(out / self.step.detach().clamp_min(_MIN_STEP))
        return out

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._init_checked = False  # the loaded ``initialized`` decides

    def extra_repr(self) -> str:
        step = float(self.step.detach().reshape(-1)[0])
        return f"num_bits={self.num_bits}, signed={self.signed}, step={step:.4g}, dequantize={self.dequantize}"


class LSQWrapper(nn.Module):
    """Run ``wrapped_module``, then quantize its output with an :class:`LSQActivationQuantization` (``act_quant``)."""

    def __init__(self, wrapped_module: nn.Module, num_bits: int, signed: bool) -> None:
        super().__init__()
        self.wrapped_module = wrapped_module
        self.act_quant = LSQActivationQuantization(num_bits, signed, inplace=getattr(wrapped_module, "inplace", False))

    def forward(self, *input: Any) -> torch.Tensor:
        return self.act_quant(self.wrapped_module(*input))


def _per_channel(module: nn.Module, param: torch.Tensor, per_channel: bool) -> bool:
    return per_channel and not isinstance(module, nn.Embedding) and param.dim() >= 2


class LSQQuantizer(Quantizer):
    """LSQ (Esser et al. 2020): weights and activations with learned step sizes.

    Args:
        model: the float model (prepared in place).
        optimizer: the training optimizer; the step sizes are added to it as one new parameter group
            with weight decay 0 when the model is prepared.
        bits_activations: bits of activations (``None``: keep float). Outputs of ReLU-like activations
            use the unsigned grid ``[0, 2^b − 1]``, others the signed one (which needs ``b ≥ 2``).
        bits_weights: bits of conv/linear/embedding weights (signed, ``≥ 2``; ``None``: float).
        bits_bias: bits of biases (signed, ``≥ 2``; ``None``: float, as in the paper).
        overrides: ``{module regex: {bits_activations/bits_weights/bits_bias: n or null}}``; first match wins.
        per_channel_wts: one weight step size per output channel (conv/linear), initialized and
            gradient-scaled per channel.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        bits_activations: int | None = 8,
        bits_weights: int | None = 8,
        bits_bias: int | None = None,
        overrides: Mapping[str, Mapping[str, Any] | None] | None = None,
        per_channel_wts: bool = False,
    ) -> None:
        # float shadow weights trained through quantized ones (STE)
        super().__init__(
            model, optimizer, bits_activations, bits_weights, bits_bias, overrides, train_with_fp_copy=True
        )
        if not isinstance(per_channel_wts, bool):
            raise ConfigError(f"per_channel_wts must be true or false, got {per_channel_wts!r}")
        for key, bits in (("bits_weights", bits_weights), ("bits_bias", bits_bias)):
            self._check_param_bits("", key, bits)
        self.per_channel_wts = per_channel_wts
        self.quantizer_metadata["params"]["per_channel_wts"] = per_channel_wts
        self.param_quantization_fn = self._lsq_quantize_param
        for cls in ACTIVATION_TYPES:
            self.replacement_factory[cls] = self._quantize_activation
        self._check_overrides(self._check_param_bits)

    @staticmethod
    def _check_param_bits(pattern: str, key: str, bits: int | None) -> None:
        if key != "bits_activations" and bits is not None and bits < 2:
            where = f"overrides.{pattern}.{key}" if pattern else key
            raise ConfigError(
                f"{where}: LSQ weights are signed and need at least 2 bits, got {bits}. "
                "Fix: use 2 or more, or DorefaQuantizer for binary weights."
            )

    def _device(self) -> torch.device:
        first = next(self.model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    # -- activations --------------------------------------------------------------------------
    def _quantize_activation(self, module: nn.Module, name: str, qbits_map: dict[str, QBits]) -> nn.Module:
        bits = qbits_map[name].acts
        if bits is None:
            return module
        signed = not isinstance(module, _NON_NEGATIVE)
        if signed and bits < 2:
            raise ConfigError(
                f"{name} ({type(module).__name__}): its output can be negative, so LSQ quantizes it on a signed "
                f"grid, which needs at least 2 bits (got bits_activations={bits}). Fix: override its "
                "bits_activations with 2 or more."
            )
        if type(module) is nn.ReLU:  # clip(x/s, 0, Q_P) is the ReLU
            new: nn.Module = LSQActivationQuantization(bits, signed=False, inplace=module.inplace)
        else:
            new = LSQWrapper(module, bits, signed)
        return new.to(self._device())

    # -- weights ------------------------------------------------------------------------------
    def _lsq_quantize_param(self, param_fp: torch.Tensor, param_meta: ParamToQuant) -> torch.Tensor:
        step = param_meta.module._parameters[param_meta.q_attr_name + STEP_SUFFIX]
        qn, qp = lsq_range(param_meta.num_bits, signed=True)
        return LSQQuantizeSTE.apply(param_fp, step, qn, qp, lsq_grad_scale(param_fp.numel() // step.numel(), qp))

    def _post_prepare_model(self) -> None:
        with torch.no_grad():
            for ptq in self.params_to_quantize:
                module = ptq.module
                fp = module._parameters[ptq.fp_attr_name]
                qp = lsq_range(ptq.num_bits, signed=True)[1]
                dim = 0 if ptq.q_attr_name != "bias" and _per_channel(module, fp, self.per_channel_wts) else None
                module.register_parameter(ptq.q_attr_name + STEP_SUFFIX, nn.Parameter(lsq_init_step(fp, qp, dim)))
        self.model.train(self.model.training)

    def step_params(self) -> list[nn.Parameter]:
        """Every learned step size: weights' (``<name>_step``) and activations' (each instance once)."""
        out: list[nn.Parameter] = []
        seen: set[int] = set()
        for ptq in self.params_to_quantize:
            p = ptq.module._parameters.get(ptq.q_attr_name + STEP_SUFFIX)
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        for module in self.model.modules():
            if isinstance(module, LSQActivationQuantization) and id(module.step) not in seen:
                seen.add(id(module.step))
                out.append(module.step)
        return out

    def _get_new_optimizer_params_groups(self) -> list[dict[str, Any]]:
        return [{"params": self.step_params(), "weight_decay": 0.0}]
