"""The classifier app's ``--sense`` mode: sensitivity analysis of the (resumed) model.

``--sense {element,filter,channel}`` prunes every analysed weight alone at each level of
``--sense-range START STOP STEP`` (``np.arange``, stop excluded), evaluates, and saves
``<log dir>/sensitivity.csv`` and ``<log dir>/sensitivity.png``. The evaluation set is the validation
split, or the test set with ``--vs 0`` (as the original); it is decoded once and kept in memory,
so shrink it with ``--effective-valid-size`` / ``--etes`` for large datasets. ``--sense-groups``
analyses coupled channel groups, ``--sense-workers N`` evaluates in N processes. The run ends with
the dense model's result line, which equals every sparsity-0 row.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from distiller.analysis.sensitivity import CachedEvaluation, perform_sensitivity_analysis, sensitivity_levels
from distiller.analysis.sensitivity_io import sensitivities_to_csv, sensitivities_to_png
from distiller.apps.loops import EvalResult, _progress
from distiller.errors import ConfigError

if TYPE_CHECKING:
    from distiller.apps.classifier import ClassifierApp, ClassifierResult

__all__ = ["CSV_FILE", "PNG_FILE", "sensitivity_analysis"]

log = logging.getLogger(__name__)

CSV_FILE = "sensitivity.csv"
PNG_FILE = "sensitivity.png"
_LARGE_CACHE = 4 * 2**30  # bytes of decoded evaluation data worth a warning


def _check(app: ClassifierApp) -> None:
    a = app.opts.analysis
    if a.sensitivity_groups and a.sensitivity == "element":
        raise ConfigError("--sense-groups prunes coupled channel groups: it needs --sense filter or --sense channel.")
    if a.sensitivity_workers < 1:
        raise ConfigError(f"--sense-workers must be at least 1 (1 evaluates in-process), got {a.sensitivity_workers}.")


def sensitivity_analysis(app: ClassifierApp) -> ClassifierResult:
    """``--sense``: analyse, save the CSV and the plot, and report the dense model's accuracy."""
    from distiller.apps.classifier import ClassifierResult

    _check(app)
    o, a = app.opts, app.opts.analysis
    levels = sensitivity_levels(*a.sensitivity_range)

    def progress(iterable, total, desc):  # noqa: ANN001, ANN202
        return _progress(iterable, total, desc, o.progress)

    if o.validation_split == 0:  # the test set stands in for validation, as in the original
        loader, split = app._data(test_only=True).test, "test"
    else:
        loader, split = app._data(test_only=False).valid, "validation"
    evaluation = CachedEvaluation.from_loader(loader, app.criterion, app.device, progress)
    log.info(
        "Sensitivity analysis on %d %s images (%.1f MiB decoded), levels %s",
        evaluation.num_samples,
        split,
        evaluation.nbytes / 2**20,
        levels,
    )
    if evaluation.nbytes > _LARGE_CACHE:
        log.warning(
            "The decoded evaluation data takes %.1f GiB (times --sense-workers); use --effective-valid-size or "
            "--etes to analyse a subset.",
            evaluation.nbytes / 2**30,
        )
    table = perform_sensitivity_analysis(
        app.model,
        None,
        levels,
        evaluation,
        a.sensitivity,
        coupled=a.sensitivity_groups,
        example=evaluation.batches[0][0][:1],  # the graph is traced on the real input shape
        workers=a.sensitivity_workers,
        progress=progress,
        distributed=app.dist is not None,  # under torchrun the ranks share the evaluations
    )
    dense = next(iter(table.values()))[0.0] if 0.0 in levels else evaluation(app.model)
    kind = f"{a.sensitivity}{', coupled groups' if a.sensitivity_groups else ''}"
    if app.dist is None or app.dist.is_main:  # every rank holds the whole table; rank 0 writes it
        csv_path = sensitivities_to_csv(table, app.run_dir / CSV_FILE)
        title = f"{o.arch}: {kind} sensitivity ({evaluation.num_samples} {split} images)"
        png_path = sensitivities_to_png(table, app.run_dir / PNG_FILE, title=title)
        app.saved.extend([csv_path, png_path])
    report = (
        f"Sensitivity ({kind}): {len(table)} {'groups' if a.sensitivity_groups else 'parameters'} x {len(levels)} "
        f"levels on {evaluation.num_samples} {split} images; the result line is the unpruned model's."
    )
    test = EvalResult(*dense, num_samples=evaluation.num_samples)
    return ClassifierResult(test, saved=list(app.saved), reports=[report])
