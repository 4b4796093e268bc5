"""The classifier app's post-training quantization modes (``--qe-calibration``, ``--quantize-eval``).

* ``--qe-calibration N`` alone: statistics of a fixed, seeded subset of the training split (evaluation
  transforms; never the test set) saved to ``<log dir>/acts_quantization_stats.yaml``.
* ``--evaluate --quantize-eval``: quantize a copy of the model (statistics from ``--qe-stats-file``,
  ``--qe-config-file``, a calibration subset, or none with ``--qe-dynamic``), optionally refine it with
  LAPQ and convert it to PyTorch's quantized modules, evaluate it on the test set and save it as
  ``<log dir>/quantized_checkpoint.pth.tar`` (reloadable with ``--resume-from``). A following
  ``--export-onnx`` step exports the quantized model as int8 ONNX.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

import torch
import yaml

from distiller.apps.ddp import shard_loader
from distiller.checkpoint import build_checkpoint
from distiller.checkpoint.save import atomic_save
from distiller.errors import ConfigError
from distiller.fileio import atomic_output
from distiller.quantization import PostTrainLinearQuantizer, calibrate, quantizer_config_from_file

if TYPE_CHECKING:
    from distiller.apps.classifier import ClassifierApp, ClassifierResult

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CALIBRATION",
    "calibration_only",
    "check_ptq_options",
    "int8_model_of_qat",
    "quantize_and_evaluate",
    "resume_quantized",
]

DEFAULT_CALIBRATION = 0.05
"""Calibration subset when ``--quantize-eval`` gets no statistics source (the original used 5%, of the test set)."""

STATS_FILE = "acts_quantization_stats.yaml"
CHECKPOINT_FILE = "quantized_checkpoint.pth.tar"


def check_ptq_options(opts: Any) -> None:
    """Combinations the quantization flags do not support, refused before any work (DESIGN §7)."""
    q = opts.quant
    if q.quantize_eval and not opts.evaluate:
        raise ConfigError("--quantize-eval quantizes the model for evaluation: it needs --evaluate.")
    if q.lapq.enabled and not q.quantize_eval:
        raise ConfigError("--qe-lapq optimizes post-training quantization: it needs --evaluate --quantize-eval.")
    if q.lapq.enabled and q.dynamic:
        raise ConfigError("--qe-lapq needs static quantization (calibration statistics), not --qe-dynamic.")
    if q.calibration_only and (opts.evaluate or opts.summary or opts.thinnify or opts.compress):
        raise ConfigError(
            "--qe-calibration without --quantize-eval only collects statistics and exits; it does not combine "
            "with --evaluate, --summary, --thinnify or --compress (add --quantize-eval to calibrate, quantize "
            "and evaluate)."
        )
    if q.convert_pytorch and not q.quantize_eval:
        raise ConfigError("--qe-convert-pytorch converts the quantized model: it needs --evaluate --quantize-eval.")


def _first_batch(loader) -> torch.Tensor:  # noqa: ANN001
    for inputs, _ in loader:
        return inputs[:1]
    raise ConfigError("The calibration subset is empty: give --qe-calibration a larger fraction or count.")


def calibration_only(app: ClassifierApp) -> ClassifierResult:
    """``--qe-calibration N`` alone: save calibration statistics and stop."""
    from distiller.apps.classifier import ClassifierResult

    loaders = app._data(test_only=False)
    calib = loaders.calibration_loader(app.opts.quant.calibration)
    path = app.run_dir / STATS_FILE
    example = _first_batch(calib).to(app.device)
    # under DDP each rank calibrates on its share and the statistics are merged
    shard, across = shard_loader(calib, app.dist), app.dist is not None
    calibrate(app.model, shard, example, device=app.device, save_path=path, across_ranks=across)
    log.info("Calibration statistics of %d training samples", len(calib.sampler))
    app.saved.append(path)
    return ClassifierResult(None, saved=list(app.saved))


def _quantizer_args(app: ClassifierApp) -> tuple[dict[str, Any], Any]:
    """Quantizer arguments and, when statistics must be collected, the data loaders for it."""
    q = app.opts.quant
    if q.config_file:
        args = quantizer_config_from_file(q.config_file)
        log.info("Post-training quantization configured by %s (other --qe* flags ignored)", q.config_file)
    else:
        args = q.quantizer_args()
        if q.stats_file:
            args["model_activation_stats"] = q.stats_file
    if args.get("model_activation_stats") is not None or q.dynamic:
        if q.dynamic:
            log.warning("Dynamic quantization: scales are computed per batch (simulation only; not deployable)")
        return args, None
    loaders = app._data(test_only=False)
    calib = loaders.calibration_loader(q.calibration if q.calibration is not None else DEFAULT_CALIBRATION)
    example = _first_batch(calib).to(app.device)
    # under DDP each rank calibrates on its share and the statistics are merged
    shard, across = shard_loader(calib, app.dist), app.dist is not None
    stats = calibrate(app.model, shard, example, device=app.device, across_ranks=across)
    log.info("Calibrated on %d training samples", len(calib.sampler))
    args["model_activation_stats"] = stats
    return args, loaders


def _save_yaml(data: Any, path) -> None:  # noqa: ANN001
    with atomic_output(path, "quantization report") as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))


def quantize_and_evaluate(app: ClassifierApp) -> ClassifierResult:
    """``--evaluate --quantize-eval``: quantize, (LAPQ), (convert), test, save the quantized checkpoint."""
    from distiller.apps.classifier import ClassifierResult
    from distiller.graph import example_input

    q = app.opts.quant
    args, loaders = _quantizer_args(app)
    example = example_input(app.model, None, device=app.device)
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(app.model).eval(), **args)
    if q.lapq.enabled:
        model = _run_lapq(app, quantizer, example, loaders)
    else:
        model = quantizer.prepare_model(example)
    model.quantizer_metadata = quantizer.quantizer_metadata
    _save_reports(app, quantizer)
    if q.convert_pytorch:
        from distiller.quantization.pytorch_convert import convert_to_pytorch

        model = convert_to_pytorch(model, example.cpu(), backend=q.pytorch_backend)
        app.device = torch.device("cpu")
    app.model = model
    test = app.test()
    _save_quantized_checkpoint(app, quantizer, test)
    return ClassifierResult(test, saved=list(app.saved))


def _save_reports(app: ClassifierApp, quantizer: PostTrainLinearQuantizer) -> None:
    if quantizer.model_activation_stats is not None:
        path = app.run_dir / "quant_stats_after_prepare_model.yaml"
        from distiller.quantization import save_quant_stats

        save_quant_stats(quantizer.model_activation_stats, path)
    _save_yaml(dict(quantizer.layer_quant_params()), app.run_dir / "layer_quant_params.yaml")


def _save_quantized_checkpoint(app: ClassifierApp, quantizer: PostTrainLinearQuantizer, test) -> None:  # noqa: ANN001
    metadata = dict(quantizer.quantizer_metadata)
    metadata["dummy_input_shape"] = list(getattr(quantizer, "dummy_input_shape", []))
    if app.opts.quant.convert_pytorch:
        metadata["pytorch_convert"] = True
        log.warning("The checkpoint holds the simulated model's description; --qe-convert-pytorch is redone on load")
    path = app.run_dir / CHECKPOINT_FILE
    checkpoint = build_checkpoint(
        model=quantizer.model,
        arch=app.opts.arch,
        dataset=app.dataset,
        epoch=max(app.start_epoch - 1, 0),
        extras={"quantized_top1": test.top1, "quantized_top5": test.top5},
        thinning_plans=[],
        quantizer_metadata=metadata,
    )
    atomic_save(checkpoint, path)
    app.saved.append(path)


def _run_lapq(app: ClassifierApp, quantizer: PostTrainLinearQuantizer, example: torch.Tensor, loaders):  # noqa: ANN001, ANN202
    from distiller.quantization.lapq import lapq_eval_fn, ptq_coordinate_search

    lq = app.opts.quant.lapq
    loaders = loaders or app._data(test_only=False)
    calib = loaders.calibration_loader(lq.eval_size if lq.eval_size != 1 else DEFAULT_CALIBRATION)
    eval_fn = lapq_eval_fn(calib, app.criterion, app.device, memoize=lq.eval_memoize_dataloader)
    model, best = ptq_coordinate_search(
        quantizer,
        example,
        eval_fn,
        method=lq.method,
        maxiter=lq.maxiter,
        maxfev=lq.maxfev,
        basinhopping=lq.basinhopping,
        basinhopping_niter=lq.basinhopping_niter,
        init_mode=lq.init_mode,
        init_method=lq.init_method,
        search_clipping=lq.search_clipping,
    )
    path = app.run_dir / f"{app.opts.arch}.quant_params_dict.yaml"
    _save_yaml(best, path)
    app.saved.append(path)
    return model


def resume_quantized(path: str, model: torch.nn.Module) -> torch.nn.Module | None:
    """``--resume-from`` a quantized checkpoint: the quantized model it describes (else None).

    The float ``model`` first takes the checkpoint's thinned shapes (a thinned model quantized later),
    so the returned model's weights load with ``load_checkpoint(..., already_thinned=True)``.
    """
    from distiller.checkpoint import replay_checkpoint_thinning
    from distiller.checkpoint.read import read_checkpoint
    from distiller.quantization.api import rebuild_quantized_model

    metadata = read_checkpoint(path).get("quantizer_metadata")
    if not metadata or metadata.get("type") != "PostTrainLinearQuantizer":
        return None
    log.info("%s holds a post-training quantized model: rebuilding its quantizer", path)
    replay_checkpoint_thinning(path, model)
    if metadata.get("pytorch_convert"):
        log.warning("The checkpoint was converted with --qe-convert-pytorch; it is loaded as the simulated model")
    return rebuild_quantized_model(model, metadata)


def int8_model_of_qat(app: ClassifierApp) -> torch.nn.Module:
    """The model ``--export-onnx`` writes: a quantization-aware trained model becomes its int8 form.

    The QAT grids (weights, clipped activations) carry over exactly; tensors the QAT model kept in
    float (the input, the logits) are calibrated to 8 bits on a training subset.
    """
    from distiller.graph import example_input
    from distiller.quantization import convert_qat_to_ptq
    from distiller.scheduler.policies import QuantizationPolicy

    quantizer = next(
        (
            p.quantizer
            for policies in app.scheduler.policies.values()
            for p in policies
            if isinstance(p, QuantizationPolicy) and p.prepared
        ),
        None,
    )
    if quantizer is None:
        return app.model
    loaders = app._data(test_only=False)
    calib = loaders.calibration_loader(min(1000, len(loaders.train_indices)))
    model = convert_qat_to_ptq(app.model, quantizer, example_input(app.model, None, device=app.device), calib)
    for attr in ("input_shape", "arch", "dataset", "num_classes"):
        if not hasattr(model, attr) and hasattr(app.model, attr):
            setattr(model, attr, getattr(app.model, attr))
    log.info("Quantization-aware trained model converted to its int8 form for export (%s)", type(quantizer).__name__)
    return model
