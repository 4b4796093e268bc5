"""The post-training quantization flags (``--qe-*``, ``--lapq-*``), spelled as in the original."""

from __future__ import annotations

import argparse

from distiller.apps.ptq_options import LapqOptions, PtqOptions

_MODES = ["sym", "sym_restr", "asym_u", "asym_s"]
_CLIPS = ["none", "avg", "n_std", "gauss", "laplace"]
_LAPQ_INIT = ["NONE", "AVG", "LAPLACE", "GAUSS", "L1", "L2", "L3"]


def add_ptq_args(parser: argparse.ArgumentParser, fraction_or_count) -> None:  # noqa: ANN001
    """Add the post-training quantization and LAPQ argument groups to ``parser``."""
    g = parser.add_argument_group("Post-Training Quantization Arguments")
    g.add_argument("--quantize-eval", "--qe", action="store_true",
                   help="Apply linear quantization to model before evaluation. Applicable only if --evaluate is set")
    g.add_argument("--qe-mode", "--qem", type=str.lower, choices=_MODES, default="sym",
                   help="Default linear quantization mode (weights and activations). Choices: " + " | ".join(_MODES))
    g.add_argument("--qe-mode-acts", "--qema", type=str.lower, choices=_MODES, default=None,
                   help="Linear quantization mode for activations. Overrides --qe-mode")
    g.add_argument("--qe-mode-wts", "--qemw", type=str.lower, choices=_MODES, default=None,
                   help="Linear quantization mode for weights. Overrides --qe-mode")
    g.add_argument("--qe-bits-acts", "--qeba", type=int, default=8, metavar="NUM_BITS",
                   help="Number of bits for quantization of activations")
    g.add_argument("--qe-bits-wts", "--qebw", type=int, default=8, metavar="NUM_BITS",
                   help="Number of bits for quantization of weights")
    g.add_argument("--qe-bits-accum", type=int, default=32, metavar="NUM_BITS",
                   help="Number of bits for quantization of the accumulator")
    g.add_argument("--qe-clip-acts", "--qeca", type=str.lower, choices=_CLIPS, default="none",
                   help="Activations clipping mode. Choices: " + " | ".join(_CLIPS))
    g.add_argument("--qe-clip-n-stds", type=float, default=None,
                   help="When qe-clip-acts is set to 'n_std', this is the number of standard deviations to use")
    g.add_argument("--qe-no-clip-layers", "--qencl", type=str, nargs="+", metavar="LAYER_NAME", default=[],
                   help="List of layer names for which not to clip activations. Applicable only if --qe-clip-acts "
                        "is not 'none'")
    g.add_argument("--qe-no-quant-layers", "--qenql", type=str, nargs="+", metavar="LAYER_NAME", default=[],
                   help="List of layer names for which to skip quantization.")
    g.add_argument("--qe-per-channel", "--qepc", action="store_true",
                   help="Enable per-channel quantization of weights (per output channel)")
    g.add_argument("--qe-scale-approx-bits", "--qesab", type=int, metavar="NUM_BITS",
                   help="Enables scale factor approximation using integer multiply + bit shift, using this number "
                        "of bits the integer multiplier")
    g.add_argument("--qe-save-fp-weights", action="store_true",
                   help="Allow weights requantization.")
    g.add_argument("--qe-convert-pytorch", "--qept", action="store_true",
                   help="Convert the quantized model to PyTorch's (deprecated) torch.ao quantized modules; "
                        "for deployment prefer --export-onnx")
    g.add_argument("--qe-pytorch-backend", default="fbgemm", choices=["fbgemm", "x86", "qnnpack"],
                   help="When --qe-convert-pytorch is set, specifies the PyTorch quantization backend to use")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--qe-stats-file", metavar="PATH",
                     help="Path to YAML file with pre-made calibration stats")
    src.add_argument("--qe-dynamic", action="store_true", help="Apply dynamic quantization (simulation only)")
    src.add_argument("--qe-calibration", type=fraction_or_count, metavar="PORTION_OF_TRAIN_SET",
                     help="Collect calibration statistics on this fraction (<= 1.0) or number (> 1) of training "
                          "samples; without --quantize-eval, save them to <log dir>/acts_quantization_stats.yaml "
                          "and exit")
    src.add_argument("--qe-config-file", type=str, metavar="PATH",
                     help="Path to YAML file containing configuration for PostTrainLinearQuantizer (if present, all "
                          "other --qe* arguments are ignored)")
    g.add_argument("--qe-lapq", "--qe-coordinate-search", action="store_true",
                   help="Optimize post-training quantization parameters using LAPQ method")

    lapq = parser.add_argument_group("Post-Training Quantization Auto-Optimization (LAPQ) Arguments")
    lapq.add_argument("--lapq-maxiter", default=None, type=int, help="Max iteration for minimization method.")
    lapq.add_argument("--lapq-maxfev", default=None, type=int,
                      help="Max iteration for minimization method.")
    lapq.add_argument("--lapq-method", default="Powell",
                      help="Minimization method used by scipy.optimize.minimize.")
    lapq.add_argument("--lapq-basinhopping", "--lapq-bh", action="store_true", default=False,
                      help="Use scipy.optimize.basinhopping stochastic global minimum search.")
    lapq.add_argument("--lapq-basinhopping-niter", "--lapq-bh-niter", default=100, type=int,
                      help="Number of iterations for the basinhopping algorithm.")
    lapq.add_argument("--lapq-init-mode", default="NONE", type=str.upper, choices=_LAPQ_INIT,
                      help="The mode of quant initalization. Choices: " + "|".join(_LAPQ_INIT))
    lapq.add_argument("--lapq-init-method", default="Powell",
                      help="If --lapq-init-mode was specified as L1/L2/L3, this specifies the method of "
                           "minimization.")
    lapq.add_argument("--lapq-eval-size", type=fraction_or_count, default=1,
                      help="Fraction (<= 1.0) or number (> 1) of the calibration samples used to evaluate the loss "
                           "during the search")
    lapq.add_argument("--lapq-eval-memoize-dataloader", action="store_true", default=False,
                      help="Stores the input batch in memory to optimize performance.")
    lapq.add_argument("--lapq-search-clipping", action="store_true",
                      help="Search on clipping values instead of scale/zero_point.")


def ptq_options_from_args(args: argparse.Namespace) -> PtqOptions:
    """The typed post-training quantization options of a parsed command line."""
    return PtqOptions(
        quantize_eval=args.quantize_eval,
        mode=args.qe_mode,
        mode_acts=args.qe_mode_acts,
        mode_wts=args.qe_mode_wts,
        bits_acts=args.qe_bits_acts,
        bits_wts=args.qe_bits_wts,
        bits_accum=args.qe_bits_accum,
        clip_acts=args.qe_clip_acts,
        clip_n_stds=args.qe_clip_n_stds,
        no_clip_layers=list(args.qe_no_clip_layers),
        no_quant_layers=list(args.qe_no_quant_layers),
        per_channel=args.qe_per_channel,
        scale_approx_bits=args.qe_scale_approx_bits,
        save_fp_weights=args.qe_save_fp_weights,
        convert_pytorch=args.qe_convert_pytorch,
        pytorch_backend=args.qe_pytorch_backend,
        stats_file=args.qe_stats_file,
        dynamic=args.qe_dynamic,
        calibration=args.qe_calibration,
        config_file=args.qe_config_file,
        lapq=LapqOptions(
            enabled=args.qe_lapq,
            maxiter=args.lapq_maxiter,
            maxfev=args.lapq_maxfev,
            method=args.lapq_method,
            basinhopping=args.lapq_basinhopping,
            basinhopping_niter=args.lapq_basinhopping_niter,
            init_mode=args.lapq_init_mode,
            init_method=args.lapq_init_method,
            eval_size=args.lapq_eval_size,
            eval_memoize_dataloader=args.lapq_eval_memoize_dataloader,
            search_clipping=args.lapq_search_clipping,
        ),
    )
