"""Simulated batch-norm folding for quantization-aware training.

At inference a batch norm that follows a conv/linear layer is folded into it (:mod:`.bn_folding`), so the
deployed, quantized layer has the *folded* weight ``W * gamma / sigma``. Quantization-aware training should
therefore quantize that folded weight, not ``W``. :class:`SimulatedFoldedBatchNorm` wraps a layer and its
batch norm and trains them that way, following Jacob et al. 2018 (arXiv:1712.05877, appendix D) with the
correction of Krishnamoorthi 2018 (arXiv:1806.08342, section 3.2.2):

* **training, before freezing**: the weight is folded with the *running* standard deviation,
  ``W_fold = W * gamma / sigma_run``, optionally quantized, and the layer output is rescaled by
  ``sigma_run / sigma_batch`` and shifted by ``beta + gamma * (b - mu_batch) / sigma_batch``. Without
  quantization this is exactly ``bn(layer(x))`` in training mode: the output is normalized with the batch
  statistics, gradients flow through them, and the running statistics are updated as ``nn.BatchNorm``
  updates them. The batch statistics come from a second, unquantized pass of the layer.
* **frozen** (after ``freeze_bn_delay`` training steps, or :meth:`~SimulatedFoldedBatchNorm.freeze`): batch
  statistics are no longer computed or tracked; the layer computes
  ``layer(x; W_fold, b_fold)`` with ``b_fold = beta + gamma * (b - mu_run) / sigma_run``, i.e. ``bn(layer(x))``
  with the batch norm in eval mode, while ``W``, ``b``, ``gamma`` and ``beta`` keep training.
* **evaluation**: as frozen.

:meth:`~SimulatedFoldedBatchNorm.fold_for_inference` returns the plain layer with the folded weight and bias.

Unlike the original Distiller, :meth:`~SimulatedFoldedBatchNorm.freeze` does not overwrite the layer's
weight with the folded one: the parameters stay ``W, b, gamma, beta`` (what the optimizer holds), so
training after freezing is exactly training of ``layer -> bn.eval()``. The step counter is the wrapper's own
(``training_steps``), not the batch norm's ``num_batches_tracked``, so a pretrained batch norm does not
freeze at once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from distiller.errors import QuantizationError

__all__ = ["FREEZE_BN_DELAY_DEFAULT", "SimulatedFoldedBatchNorm"]

#: Training steps with batch statistics before the batch norm is frozen (the original's default).
FREEZE_BN_DELAY_DEFAULT = 200000

# (layer types, the batch norm that must follow them)
_FOLDABLE: tuple[tuple[tuple[type[nn.Module], ...], type[nn.Module]], ...] = (
    ((nn.Linear, nn.Conv1d), nn.BatchNorm1d),
    ((nn.Conv2d,), nn.BatchNorm2d),
    ((nn.Conv3d,), nn.BatchNorm3d),
)

ParamQuantizationFn = Callable[[torch.Tensor], torch.Tensor]


def _verify(param_module: nn.Module, bn: nn.Module) -> None:
    seq = f"{type(param_module).__name__} -> {type(bn).__name__}"
    for layers, bn_type in _FOLDABLE:
        if isinstance(param_module, layers):
            if not isinstance(bn, bn_type):
                raise QuantizationError(
                    f"Cannot fold the sequence {seq}: {type(param_module).__name__} must be followed by "
                    f"{bn_type.__name__}."
                )
            break
    else:
        raise QuantizationError(
            f"Cannot fold the sequence {seq}: only Linear or Conv1d followed by BatchNorm1d, Conv2d followed by "
            "BatchNorm2d and Conv3d followed by BatchNorm3d can be folded."
        )
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        raise QuantizationError(
            f"Cannot fold the sequence {seq}: the batch norm does not track running statistics "
            "(track_running_stats=False), so there is nothing to fold for inference. Create it with "
            "track_running_stats=True."
        )
    out = param_module.out_features if isinstance(param_module, nn.Linear) else param_module.out_channels
    if bn.num_features != out:
        raise QuantizationError(
            f"Cannot fold the sequence {seq}: the layer has {out} outputs but the batch norm {bn.num_features} "
            "features."
        )


class SimulatedFoldedBatchNorm(nn.Module):
    """A conv/linear layer and the batch norm after it, trained with the batch norm folded into the weight.

    Args:
        param_module: ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d`` (any groups, dilation,
            padding mode), with or without bias. Kept (not copied) as ``self.param_module``.
        bn: the batch norm that follows it: ``BatchNorm1d`` after ``Linear``/``Conv1d``, ``BatchNorm2d``
            after ``Conv2d``, ``BatchNorm3d`` after ``Conv3d``; affine or not (then ``gamma = 1``,
            ``beta = 0``), momentum ``None`` (cumulative average) supported; it must track running
            statistics. Kept as ``self.bn``.
        freeze_bn_delay: training steps (training-mode forward passes) that use batch statistics; the
            next one freezes the batch norm. ``None`` never freezes automatically.
        param_quantization_fn: applied to the folded weight and the folded bias before the layer uses them,
            e.g. a fake quantizer with a straight-through gradient
            (:func:`~distiller.quantization.ste.linear_quantize_ste`). ``None``: no quantization.

    Buffers (in the state dict): ``training_steps`` (training steps taken with batch statistics, also
    :attr:`steps`) and ``bn_frozen`` (also :attr:`frozen`). A host copy spares a device synchronization per
    step; it is refreshed after ``load_state_dict``. Under ``nn.DataParallel`` the buffers of the first
    device's replica count, as for the batch norm's running statistics.

    A ``Linear`` layer must get 2-D ``(batch, features)`` inputs (``BatchNorm1d`` normalizes dimension 1).

    Raises:
        QuantizationError: an unsupported pair of modules, a channel-count mismatch, or a batch norm
            without running statistics.
    """

    def __init__(
        self,
        param_module: nn.Module,
        bn: nn.Module,
        freeze_bn_delay: int | None = FREEZE_BN_DELAY_DEFAULT,
        param_quantization_fn: ParamQuantizationFn | None = None,
    ) -> None:
        _verify(param_module, bn)
        if freeze_bn_delay is not None and freeze_bn_delay < 0:
            raise QuantizationError(f"freeze_bn_delay must be >= 0 or None, got {freeze_bn_delay}.")
        super().__init__()
        self.param_module = param_module
        self.bn = bn
        self.freeze_bn_delay = freeze_bn_delay
        self.param_quantization_fn = param_quantization_fn
        self.register_buffer("training_steps", torch.zeros((), dtype=torch.long, device=bn.running_mean.device))
        self.register_buffer("bn_frozen", torch.zeros((), dtype=torch.bool, device=bn.running_mean.device))
        # Host copy of the two buffers, so that a training step needs no device synchronization. It is a
        # dict so that nn.DataParallel replicas (shallow copies) share it: they mark it stale.
        self._host: dict[str, int | bool] = {"steps": 0, "frozen": False, "valid": True}

    # --- state --------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, int | bool]:
        host = self._host
        if getattr(self, "_is_replica", False):
            # an nn.DataParallel replica: its buffers on the first device are the wrapped module's, and
            # they are the ones that count
            host["valid"] = False
            return {"steps": int(self.training_steps), "frozen": bool(self.bn_frozen)}
        if not host["valid"]:
            host.update(steps=int(self.training_steps), frozen=bool(self.bn_frozen), valid=True)
        return host

    @property
    def frozen(self) -> bool:
        """Whether the batch norm is frozen (running statistics used and no longer updated)."""
        return bool(self._state()["frozen"])

    @property
    def steps(self) -> int:
        """Training steps taken with batch statistics (the ``training_steps`` buffer)."""
        return int(self._state()["steps"])

    def freeze(self) -> None:
        """Stop using and tracking batch statistics: from now on the folding uses the running statistics."""
        self.bn_frozen.fill_(True)
        self._state()["frozen"] = True

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._host["valid"] = False

    # --- pieces -------------------------------------------------------------------------------------------

    def _layer(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.param_module, nn.Linear):
            if x.dim() != 2:
                raise QuantizationError(
                    f"SimulatedFoldedBatchNorm over Linear needs 2-D (batch, features) inputs, got shape "
                    f"{tuple(x.shape)}: BatchNorm1d would normalize dimension 1, not the Linear's features."
                )
            return nn.functional.linear(x, weight, bias)
        return self.param_module._conv_forward(x, weight, bias)

    def _channel_view(self, t: torch.Tensor, dims: int) -> torch.Tensor:
        """``t`` (one value per channel) shaped to broadcast over dim 1 of a ``dims``-D tensor."""
        return t.view((-1,) + (1,) * (dims - 2))

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        running_mean = self.bn.running_mean
        gamma = self.bn.weight if self.bn.weight is not None else torch.ones_like(running_mean)
        beta = self.bn.bias if self.bn.bias is not None else torch.zeros_like(running_mean)
        return gamma, beta

    def _quantize(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.param_quantization_fn is None else self.param_quantization_fn(t)

    def _folded_running(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias folded with the running statistics (differentiable w.r.t. W, b, gamma, beta)."""
        weight, bias = self.param_module.weight, self.param_module.bias
        gamma, beta = self._affine()
        recip_sigma = torch.rsqrt(self.bn.running_var + self.bn.eps)
        scale = gamma * recip_sigma
        folded_weight = weight * scale.view((-1,) + (1,) * (weight.dim() - 1))
        mean = self.bn.running_mean if bias is None else self.bn.running_mean - bias
        folded_bias = beta - mean * scale
        return folded_weight, folded_bias

    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        """Update the running statistics as ``nn.BatchNorm`` does (unbiased variance, momentum or average)."""
        bn = self.bn
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.mul_(1 - momentum).add_(mean.to(bn.running_mean.dtype), alpha=momentum)
            unbiased = var * (n / (n - 1))
            bn.running_var.mul_(1 - momentum).add_(unbiased.to(bn.running_var.dtype), alpha=momentum)

    # --- forward ------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            state = self._state()
            if not state["frozen"]:
                if self.freeze_bn_delay is not None and state["steps"] >= self.freeze_bn_delay:
                    self.freeze()
                else:
                    out = self._forward_batch_stats(x)
                    state["steps"] += 1
                    self.training_steps.add_(1)
                    return out
        folded_weight, folded_bias = self._folded_running()
        return self._layer(x, self._quantize(folded_weight), self._quantize(folded_bias))

    def _forward_batch_stats(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.param_module.weight, self.param_module.bias
        gamma, beta = self._affine()
        # what the batch norm would normalize: the layer's float output, bias included
        y = self._layer(x, weight, bias)
        reduce_dims = [0] + list(range(2, y.dim()))
        n = y.numel() // y.shape[1]
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(y.shape)}")
        batch_var, batch_mean = torch.var_mean(y, dim=reduce_dims, correction=0)
        recip_sigma_batch = torch.rsqrt(batch_var + self.bn.eps)
        sigma_running = torch.sqrt(self.bn.running_var + self.bn.eps)  # before this batch's update
        self._update_running_stats(batch_mean.detach(), batch_var.detach(), n)

        # weight folded with the running sigma (what inference will use), then quantized
        folded_weight = weight * (gamma / sigma_running).view((-1,) + (1,) * (weight.dim() - 1))
        out = self._layer(x, self._quantize(folded_weight), None)
        # undo the running sigma, apply the batch sigma: sigma_run / sigma_batch
        out = out * self._channel_view(sigma_running * recip_sigma_batch, out.dim())
        # bias folded with the batch mean and sigma
        mean = batch_mean if bias is None else batch_mean - bias
        folded_bias = beta - gamma * mean * recip_sigma_batch
        return out + self._channel_view(self._quantize(folded_bias), out.dim())

    # --- deployment ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def fold_for_inference(self) -> nn.Module:
        """A copy of the layer with the batch norm folded in with the running statistics.

        The result computes what this module computes in eval mode without ``param_quantization_fn``: a
        plain ``Linear``/``Conv*d`` (with a bias, created if the layer had none) for deployment or
        post-training quantization. Folding is done in float64 and cast back. This module is unchanged.
        """
        layer = copy.deepcopy(self.param_module)
        weight, bias = self.param_module.weight, self.param_module.bias
        gamma, beta = self._affine()
        scale = gamma.double() * torch.rsqrt(self.bn.running_var.double() + self.bn.eps)
        mean = self.bn.running_mean.double()
        if bias is not None:
            mean = mean - bias.double()
        folded_bias = (beta.double() - mean * scale).to(dtype=weight.dtype, device=weight.device)
        folded_weight = weight.double() * scale.view((-1,) + (1,) * (weight.dim() - 1))
        layer.weight.copy_(folded_weight.to(weight.dtype))
        if layer.bias is None:
            layer.bias = nn.Parameter(folded_bias, requires_grad=weight.requires_grad)
        else:
            layer.bias.copy_(folded_bias)
        return layer

    def extra_repr(self) -> str:
        quant = (
            "None"
            if self.param_quantization_fn is None
            else getattr(self.param_quantization_fn, "__name__", type(self.param_quantization_fn).__name__)
        )
        return f"freeze_bn_delay={self.freeze_bn_delay}, frozen={self.frozen}, param_quantization_fn={quant}"
