"""The typed post-training-quantization options of the classifier app (``--qe-*``, ``--lapq-*``)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LapqOptions", "PtqOptions"]


@dataclass
class LapqOptions:
    """``--qe-lapq`` and the ``--lapq-*`` flags (defaults are the original's)."""

    enabled: bool = False
    maxiter: int | None = None
    maxfev: int | None = None
    method: str = "Powell"
    basinhopping: bool = False
    basinhopping_niter: int = 100
    init_mode: str = "NONE"
    init_method: str = "Powell"
    eval_size: float = 1.0
    eval_memoize_dataloader: bool = False
    search_clipping: bool = False


@dataclass
class PtqOptions:
    """Everything the ``--qe-*`` flags say; :meth:`quantizer_args` turns it into quantizer arguments."""

    quantize_eval: bool = False
    mode: str = "sym"
    mode_acts: str | None = None
    mode_wts: str | None = None
    bits_acts: int | None = 8
    bits_wts: int | None = 8
    bits_accum: int = 32
    clip_acts: str = "none"
    clip_n_stds: float | None = None
    no_clip_layers: list[str] = field(default_factory=list)
    no_quant_layers: list[str] = field(default_factory=list)
    per_channel: bool = False
    scale_approx_bits: int | None = None
    save_fp_weights: bool = False
    convert_pytorch: bool = False
    pytorch_backend: str = "fbgemm"
    stats_file: str | None = None
    dynamic: bool = False
    calibration: float | None = None  # fraction (<= 1) or count (> 1) of the training split
    config_file: str | None = None
    lapq: LapqOptions = field(default_factory=LapqOptions)

    @property
    def calibration_only(self) -> bool:
        """``--qe-calibration`` without ``--quantize-eval``: collect statistics and stop."""
        return self.calibration is not None and not self.quantize_eval

    def quantizer_args(self) -> dict[str, Any]:
        """``PostTrainLinearQuantizer`` keyword arguments (without statistics), as the original's ``from_args``."""
        overrides: OrderedDict[str, dict[str, Any]] = OrderedDict()
        for layer in self.no_quant_layers:
            overrides[layer] = {"bits_activations": None, "bits_weights": None, "bits_bias": None}
        for layer in self.no_clip_layers:
            overrides.setdefault(layer, {})["clip_acts"] = "NONE"
        mode: Any = self.mode
        if self.mode_acts or self.mode_wts:
            mode = {"activations": self.mode_acts or self.mode, "weights": self.mode_wts or self.mode}
        return {
            "bits_activations": self.bits_acts,
            "bits_parameters": self.bits_wts,
            "bits_accum": self.bits_accum,
            "mode": mode,
            "clip_acts": self.clip_acts,
            "clip_n_stds": self.clip_n_stds,
            "per_channel_wts": self.per_channel,
            "scale_approx_mult_bits": self.scale_approx_bits,
            "save_fp_weights": self.save_fp_weights,
            "overrides": overrides,
        }
