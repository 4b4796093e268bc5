"""Activation statistics for post-training quantization ("calibration").

A post-training quantizer picks each activation's range (and clipping) from statistics of the values
that flow into and out of every layer on a few calibration batches. :func:`collect_quant_stats`
records them for every leaf module, per positional input and for the output:

``min``, ``max``
    global extremes;
``avg_min``, ``avg_max``
    mean over all samples of each sample's extreme (less sensitive to outliers than min/max);
``mean``, ``std``
    over all elements seen (population std);
``b``
    mean absolute deviation from ``mean`` (the Laplace scale used by ACIQ clipping). It needs the
    final mean, hence a second pass over the same batches;
``shape``
    the tensor's shape on the first batch, written ``(256, 3, 224, 224)`` like the original;
``total_numel``
    the number of elements the statistics cover.

The result has the layout of the original's ``acts_quantization_stats.yaml``::

    {"conv1": {"inputs": {0: {"min": ..., ...}}, "output": {"min": ..., ...}}, ...}

Design choices, and why:

* Inputs are measured in a forward *pre*-hook: an in-place module (``ReLU(inplace=True)``, an in-place
  ``EltwiseAdd``) overwrites its input, so a post-hook would see the output twice. The original had to
  switch ``inplace`` off; here nothing in the model changes.
* Each batch is reduced to a few float64 numbers inside the hook (nothing is kept alive), and the
  mean/variance are merged with Chan's parallel formula on shifted data, which stays accurate over
  millions of elements where float32 running sums do not.
* A module called more than once per forward pass (one ``ReLU`` shared by two places) would mix
  different activations into one record, and a quantizer would use one scale for both: it is an
  error, detected while the model runs.
* Only floating-point tensors are measured. Integer inputs (token indices into an ``nn.Embedding``)
  and non-tensor arguments are not activations to quantize, and neither are tuple outputs (an LSTM's
  ``(out, (h, c))``); such slots are absent from the record, keeping the file's layout simple.
* A sample that holds a single value (``(batch,)`` or ``(batch, 1)`` tensors) has equal min and max,
  so its ``avg_min``/``avg_max`` would collapse to the mean: as in the original, such a sample's
  extremes are those of its batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError, QuantizationError
from distiller.naming import normalize_module_name

__all__ = [
    "STAT_KEYS",
    "QuantCalibrationStatsCollector",
    "calibration_forward",
    "collect_quant_stats",
    "unwrap_parallel",
    "watched_modules",
]

STAT_KEYS: tuple[str, ...] = ("min", "max", "avg_min", "avg_max", "mean", "std", "b", "shape", "total_numel")
"""The keys of one statistics entry, in the order the original's YAML file lists them."""

_PARALLEL = (nn.DataParallel, nn.parallel.DistributedDataParallel)
_HALF_TYPES = (torch.float16, torch.bfloat16)
_MEMO_SIZE = 4  # recently measured tensors remembered (see QuantCalibrationStatsCollector._summary)


# --- choosing the modules -----------------------------------------------------------------------


def unwrap_parallel(model: nn.Module) -> nn.Module:
    """The model inside ``DataParallel``/``DistributedDataParallel`` wrappers (or ``model`` itself).

    Statistics are collected on the plain model: DataParallel replicas run hooks from several threads
    on slices of the batch, and their names would carry a ``module.`` element.

    Raises:
        QuantizationError: a multi-device DataParallel or a DDP is nested inside the model.
    """
    while isinstance(model, _PARALLEL):
        model = model.module
    for name, module in model.named_modules():
        multi_device = isinstance(module, nn.DataParallel) and len(module.device_ids or []) > 1
        if multi_device or isinstance(module, nn.parallel.DistributedDataParallel):
            raise QuantizationError(
                f"Module {name!r} is a {type(module).__name__} wrapper inside the model; statistics cannot be "
                "collected through parallel replicas. Load the model without DataParallel (or unwrap that "
                "submodule) before calibration."
            )
    return model


def watched_modules(
    model: nn.Module,
    classes: Sequence[type[nn.Module]] | None = None,
    skip_types: Sequence[type[nn.Module]] = (nn.Identity,),
) -> dict[str, nn.Module]:
    """The leaf modules whose activations are recorded, by canonical name, in ``named_modules`` order.

    Containers are skipped: their inputs and outputs are those of their first and last leaves. With
    ``classes`` only leaves of those types are kept. A module reachable under two names is kept
    once, under its first name.
    """
    chosen: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not name or next(module.children(), None) is not None:
            continue
        if isinstance(module, tuple(skip_types)):
            continue
        if classes is not None and not isinstance(module, tuple(classes)):
            continue
        chosen[normalize_module_name(name)] = module
    return chosen


# --- hooks shared by the statistics and histogram collectors -----------------------------------


class ActivationHooks:
    """Forward pre-hooks (inputs) and hooks (output) on chosen modules, each called once per forward.

    Subclasses implement :meth:`on_inputs` and :meth:`on_output`. Calls are counted during each
    forward pass of ``root`` (the model whose ``forward`` ``run_forward`` calls); a module called a
    second time in the same pass raises :class:`QuantizationError` from inside the forward.
    Use as a context manager, or :meth:`start`/:meth:`stop`.
    """

    def __init__(self, root: nn.Module, modules: dict[str, nn.Module]) -> None:
        self.root = root
        self.modules = modules
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._calls: dict[str, int] | None = None  # None: not inside a forward of ``root``

    def start(self) -> ActivationHooks:
        """Register the hooks (idempotent)."""
        if self._handles:
            return self
        self._handles.append(self.root.register_forward_pre_hook(self._root_begins))
        self._handles.append(self.root.register_forward_hook(self._root_ends, always_call=True))
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(partial(self._pre_hook, name)))
            self._handles.append(module.register_forward_hook(partial(self._post_hook, name)))
        return self

    def stop(self) -> ActivationHooks:
        """Remove the hooks; what was recorded stays."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._calls = None
        return self

    def __enter__(self) -> ActivationHooks:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _root_begins(self, module: nn.Module, args: Any) -> None:
        self._calls = {}

    def _root_ends(self, module: nn.Module, args: Any, output: Any) -> None:
        self._calls = None
        self.on_forward_end()

    def _pre_hook(self, name: str, module: nn.Module, args: tuple) -> None:
        if self._calls is not None:
            count = self._calls[name] = self._calls.get(name, 0) + 1
            if count > 1:
                raise QuantizationError(
                    f"Module {name!r} ({type(module).__name__}) is called more than once in one forward pass, so "
                    "its activation statistics would mix different tensors and one quantization range would "
                    "serve all calls. Give every call its own module: use distiller.quantization.modularize "
                    "first (or define a separate module for each call in the model)."
                )
        self.on_inputs(name, args)

    def _post_hook(self, name: str, module: nn.Module, args: tuple, output: Any) -> None:
        self.on_output(name, output)

    def on_inputs(self, name: str, args: tuple) -> None:
        """Called before ``name`` runs, with its positional arguments."""

    def on_output(self, name: str, output: Any) -> None:
        """Called after ``name`` ran, with what it returned."""

    def on_forward_end(self) -> None:
        """Called after each forward pass of the root model (also when it raised)."""


def float_tensor(value: Any) -> torch.Tensor | None:
    """``value`` (detached) when it is a non-empty floating-point tensor to measure, else ``None``."""
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel() > 0:
        return value.detach()
    return None


def widen(tensor: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 as float32, so that differences and sums keep their precision."""
    return tensor.float() if tensor.dtype in _HALF_TYPES else tensor


def per_sample(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as ``(samples, values per sample)``: dimension 0 is the batch (a scalar is one sample)."""
    if tensor.dim() == 0:
        return tensor.reshape(1, 1)
    return tensor.reshape(tensor.shape[0], -1)


# --- the statistics of one tensor slot ---------------------------------------------------------


def batch_summary(tensor: torch.Tensor) -> tuple[float, ...]:
    """First-pass numbers of one batch: ``(samples, numel, min, max, sum of sample mins, sum of sample
    maxes, mean, M2)``, M2 being the sum of squared deviations from the batch mean (float64)."""
    x = per_sample(widen(tensor))
    samples, per = x.shape
    numel = x.numel()
    if per == 1:  # one value per sample: use the batch's extremes (see the module docstring)
        lo, hi = x.min(), x.max()
        sum_min, sum_max = lo.double() * samples, hi.double() * samples
    else:
        mins, maxs = x.amin(dim=1), x.amax(dim=1)
        lo, hi = mins.min(), maxs.max()
        sum_min, sum_max = mins.sum(dtype=torch.float64), maxs.sum(dtype=torch.float64)
    # Shifted data: deviations from the (float32) batch mean are small, so their float64 sums give an
    # accurate mean and M2 even when |mean| >> std (a float32 var_mean is off by the mean's rounding).
    shift = x.mean()
    dev = x - shift
    # Per-sample float32 sums (PyTorch sums with cascaded partial sums) then float64 across samples:
    # as accurate here as a float64 reduction, several times faster on CPU.
    s1 = dev.sum(dim=1).double().sum()
    s2 = dev.square().sum(dim=1).double().sum()
    lo_v, hi_v, sum_min_v, sum_max_v, shift_v, s1_v, s2_v = torch.stack(
        [lo.double(), hi.double(), sum_min, sum_max, shift.double(), s1, s2]
    ).tolist()
    mean = shift_v + s1_v / numel
    m2 = max(s2_v - s1_v * s1_v / numel, 0.0)
    return samples, numel, lo_v, hi_v, sum_min_v, sum_max_v, mean, m2


def abs_deviation_sum(tensor: torch.Tensor, mean: float) -> float:
    """Second-pass number of one batch: the sum of ``|x - mean|`` (float64 accumulation)."""
    tensor = widen(tensor)
    center = torch.tensor(mean, dtype=torch.float64, device=tensor.device).to(tensor.dtype)
    return per_sample(tensor - center).abs().sum(dim=1).double().sum().item()


class _RunningStats:
    """Statistics of one input or output of one module, merged batch by batch (float64 on the host)."""

    def __init__(self) -> None:
        self.numel = 0
        self.samples = 0
        self.min = math.inf
        self.max = -math.inf
        self.sum_min = 0.0
        self.sum_max = 0.0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean
        self.shape: str | None = None
        self.abs_dev = 0.0  # second pass: sum of |x - mean|
        self.numel2 = 0

    def merge(self, summary: tuple[float, ...], shape: torch.Size) -> None:
        """First pass: add a :func:`batch_summary` (Chan's parallel mean/variance update)."""
        samples, numel, lo, hi, sum_min, sum_max, mean, m2 = summary
        total = self.numel + numel
        delta = mean - self.mean
        self.mean += delta * numel / total
        self.m2 += m2 + delta * delta * self.numel * numel / total
        self.numel = total
        self.samples += samples
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        self.sum_min += sum_min
        self.sum_max += sum_max
        if self.shape is None:
            self.shape = str(tuple(shape))

    def summary(self) -> tuple[float, ...]:
        """These statistics in :func:`batch_summary` form, so another :class:`_RunningStats` can merge them."""
        return (self.samples, self.numel, self.min, self.max, self.sum_min, self.sum_max, self.mean, self.m2)

    def merge_second(self, abs_dev: float, numel: int) -> None:
        """Second pass: add an :func:`abs_deviation_sum` computed around :attr:`mean`."""
        self.abs_dev += abs_dev
        self.numel2 += numel

    def result(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "min": self.min,
            "max": self.max,
            "avg_min": self.sum_min / self.samples,
            "avg_max": self.sum_max / self.samples,
            "mean": self.mean,
            "std": math.sqrt(self.m2 / self.numel),
        }
        if self.numel2:
            entry["b"] = self.abs_dev / self.numel2
        entry["shape"] = self.shape
        entry["total_numel"] = self.numel
        return entry


# --- the collector ------------------------------------------------------------------------------


class QuantCalibrationStatsCollector(ActivationHooks):
    """Record quantization statistics of the inputs and output of a model's leaf modules.

    Two passes over the same batches: during the first (the default) it records extremes, mean and
    std; after :meth:`begin_second_pass` it records ``b``, the mean absolute deviation from the
    first pass's mean. :func:`collect_quant_stats` drives both passes; use the class directly to
    feed batches yourself::

        collector = QuantCalibrationStatsCollector(model)
        with collector, torch.no_grad():
            for x in batches: model(x)
            collector.begin_second_pass()
            for x in batches: model(x)
        stats = collector.value()

    Args:
        model: the model whose ``forward`` is called (DataParallel wrappers are unwrapped).
        classes: record only leaf modules of these types (default: every leaf).
        skip_types: leaf types never recorded (``nn.Identity`` passes its input through).

    Raises:
        QuantizationError: the model has no module to record, or (while running) a module is called
            twice in one forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[type[nn.Module]] | None = None,
        skip_types: Sequence[type[nn.Module]] = (nn.Identity,),
    ) -> None:
        model = unwrap_parallel(model)
        modules = watched_modules(model, classes, skip_types)
        if not modules:
            kinds = "leaf modules" if classes is None else f"leaf modules of types {[c.__name__ for c in classes]}"
            raise QuantizationError(f"The model has no {kinds} to collect activation statistics for.")
        super().__init__(model, modules)
        self.second_pass = False
        self._inputs: dict[str, dict[int, _RunningStats]] = {name: {} for name in modules}
        self._outputs: dict[str, _RunningStats] = {}
        self._memo: list[tuple[torch.Tensor, int, Any, Any]] = []

    def begin_second_pass(self) -> None:
        """Switch to recording ``b``; run the same batches again."""
        self.second_pass = True
        self._memo.clear()

    def reset(self) -> None:
        """Forget everything and return to the first pass."""
        self.second_pass = False
        self._inputs = {name: {} for name in self.modules}
        self._outputs = {}
        self._memo.clear()

    def _summary(self, source: torch.Tensor, tensor: torch.Tensor, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, reused when the same unmodified tensor was just measured with the same ``key``.

        A module's output is usually the next module's input: measuring it once halves the work. The
        memo holds the tensors themselves (so their ids cannot be reused) and their version counters
        (an in-place op in between invalidates the entry); it is emptied after every forward pass.
        """
        for seen, version, seen_key, value in self._memo:
            if seen is source and version == source._version and seen_key == key:
                return value
        value = compute()
        self._memo.append((source, source._version, key, value))
        del self._memo[:-_MEMO_SIZE]
        return value

    def _record(self, stats: _RunningStats | None, source: Any) -> _RunningStats | None:
        """Add the tensor ``source`` (a module argument or output) to ``stats``; the slot's new stats."""
        tensor = float_tensor(source)
        if tensor is None:
            return stats
        if self.second_pass:
            if stats is not None and stats.numel:  # a slot unseen in the first pass has no mean
                mean = stats.mean
                abs_dev = self._summary(source, tensor, ("b", mean), lambda: abs_deviation_sum(tensor, mean))
                stats.merge_second(abs_dev, tensor.numel())
            return stats
        stats = stats or _RunningStats()
        stats.merge(self._summary(source, tensor, "stats", lambda: batch_summary(tensor)), tensor.shape)
        return stats

    def on_inputs(self, name: str, args: tuple) -> None:
        slots = self._inputs[name]
        for index, arg in enumerate(args):
            stats = self._record(slots.get(index), arg)
            if stats is not None:
                slots[index] = stats

    def on_output(self, name: str, output: Any) -> None:
        stats = self._record(self._outputs.get(name), output)
        if stats is not None:
            self._outputs[name] = stats

    def on_forward_end(self) -> None:
        self._memo.clear()

    def stop(self) -> QuantCalibrationStatsCollector:
        super().stop()
        self._memo.clear()
        return self

    def _slots(self) -> dict[tuple[str, int | None], _RunningStats]:
        slots: dict[tuple[str, int | None], _RunningStats] = {}
        for name, inputs in self._inputs.items():
            slots.update({(name, index): stats for index, stats in inputs.items()})
        slots.update({(name, None): stats for name, stats in self._outputs.items()})
        return slots

    def merge_across_ranks(self) -> None:
        """Combine the current pass's statistics of every rank of a distributed job (no-op in one process).

        Each rank calibrates on its share of the batches; the quantizer needs the statistics of all of
        them, and every rank must quantize alike. After the first pass the ranks exchange their
        extremes, sums, means and squared deviations and merge them in rank order (Chan's formula,
        so every rank computes bit-identical results); the second pass then measures ``b`` around the
        global mean and its sums are added up the same way. Call it on every rank, after each pass.
        """
        from distiller.distributed.collectives import all_gather_objects
        from distiller.distributed.process_group import is_active

        if not is_active():
            return
        slots = self._slots()
        if self.second_pass:
            local = {key: (s.abs_dev, s.numel2) for key, s in slots.items()}
            totals: dict = {}
            for part in all_gather_objects(local, what="calibration statistics (second pass)"):
                for key, (abs_dev, numel) in part.items():
                    acc = totals.setdefault(key, [0.0, 0])
                    acc[0] += abs_dev
                    acc[1] += numel
            for key, stats in slots.items():
                stats.abs_dev, stats.numel2 = totals.get(key, (0.0, 0))
            return
        local = {key: (s.summary(), s.shape) for key, s in slots.items()}
        merged: dict[tuple[str, int | None], _RunningStats] = {}
        shapes: dict[tuple[str, int | None], str | None] = {}
        for part in all_gather_objects(local, what="calibration statistics (first pass)"):
            for key, (summary, shape) in part.items():
                stats = merged.setdefault(key, _RunningStats())
                if summary[1]:  # a slot with no elements on that rank adds nothing
                    stats.merge(summary, torch.Size())
                if shapes.get(key) is None:
                    shapes[key] = shape  # the first batch's shape, as a single process records it
        for key, stats in merged.items():
            stats.shape = shapes[key]
        self._outputs = {name: merged[(name, None)] for name in self.modules if (name, None) in merged}
        self._inputs = {name: {} for name in self.modules}
        for (name, index), stats in merged.items():
            if index is not None:
                self._inputs[name][index] = stats

    def seen_any(self) -> bool:
        """Whether the first pass recorded anything."""
        return bool(self._outputs) or any(self._inputs.values())

    def value(self) -> dict[str, dict[str, Any]]:
        """``{module: {"inputs": {index: entry}, "output": entry}}`` in ``named_modules`` order.

        Modules that saw no floating-point data are absent, and so is ``inputs`` or ``output`` when
        it had nothing to record. Entries hold plain Python floats, ints and the shape string.
        """
        stats: dict[str, dict[str, Any]] = {}
        for name in self.modules:
            record: dict[str, Any] = {}
            inputs = self._inputs[name]
            if inputs:
                record["inputs"] = {index: inputs[index].result() for index in sorted(inputs)}
            if name in self._outputs:
                record["output"] = self._outputs[name].result()
            if record:
                stats[name] = record
        return stats

    def pass_mismatches(self) -> list[str]:
        """Slots whose element count differed between the two passes (the batches were not replayed)."""
        slots = [(f"{n}.inputs[{i}]", s) for n, d in self._inputs.items() for i, s in d.items()]
        slots += [(f"{n}.output", s) for n, s in self._outputs.items()]
        return [where for where, s in slots if s.numel2 != s.numel]

    def __repr__(self) -> str:
        state = "running" if self._handles else "stopped"
        return (
            f"QuantCalibrationStatsCollector({len(self.modules)} modules, pass {2 if self.second_pass else 1}, {state})"
        )


# --- driving the passes -------------------------------------------------------------------------


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; restore each one's own ``training`` flag afterwards.

    Restoring per module (not ``model.train(was_training)``) keeps deliberately frozen parts, such as
    BatchNorm layers held in eval mode during training, as they were.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def collect_quant_stats(
    model: nn.Module,
    run_forward: Callable[[nn.Module], None],
    *,
    classes: Sequence[type[nn.Module]] | None = None,
    save_path: str | os.PathLike | None = None,
    across_ranks: bool = False,
) -> dict[str, dict[str, Any]]:
    """Collect quantization statistics of ``model``'s activations (two passes).

    Args:
        model: the FP32 model; DataParallel/DDP wrappers are unwrapped and ``run_forward`` gets the
            inner model. It runs in eval mode under ``torch.no_grad()``; modes are restored after.
        run_forward: ``run_forward(model)`` runs the calibration batches through ``model``. It is called
            twice and must feed the same batches both times (a fixed subset, in a fixed order).
        classes: record only leaf modules of these types (default: every leaf except ``nn.Identity``).
        save_path: also write the statistics there (the ``acts_quantization_stats.yaml`` layout).
        across_ranks: in a distributed (DDP) job, ``run_forward`` feeds this rank's share of the
            calibration batches and the statistics are merged over all ranks after each pass
            (:meth:`QuantCalibrationStatsCollector.merge_across_ranks`); every rank must call it.
            Without a distributed job it changes nothing.

    Returns:
        ``{module name: {"inputs": {index: entry}, "output": entry}}`` in ``named_modules`` order, each
        entry with the keys of :data:`STAT_KEYS`.

    Raises:
        QuantizationError: no module to record, ``run_forward`` fed no data, or a module is called
            twice in one forward pass.
    """
    inner = unwrap_parallel(model)
    collector = QuantCalibrationStatsCollector(inner, classes=classes)
    with eval_mode(inner), torch.no_grad(), collector:
        run_forward(inner)
        if across_ranks:
            collector.merge_across_ranks()
        if not collector.seen_any():
            raise QuantizationError(
                "Calibration saw no data: run_forward did not run any floating-point batch through the model. "
                "Check the calibration loader (a non-empty subset of the training split)."
            )
        collector.begin_second_pass()
        run_forward(inner)
        if across_ranks:
            collector.merge_across_ranks()
    mismatched = collector.pass_mismatches()
    if mismatched:
        warnings.warn(
            f"Calibration: run_forward fed different amounts of data in its two passes (e.g. {mismatched[0]}); "
            "'b' was averaged over the second pass's data. Use a loader that replays the same batches.",
            stacklevel=2,
        )
    stats = collector.value()
    if save_path is not None:
        from distiller.quantization.stats_file import save_quant_stats

        save_quant_stats(stats, save_path)
    return stats


def _move(inputs: Any, device: torch.device | str) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_move(x, device) for x in inputs)
    return inputs


def calibration_forward(
    loader: Iterable[Any],
    device: torch.device | str = "cpu",
    max_batches: int | None = None,
) -> Callable[[nn.Module], None]:
    """A ``run_forward`` for :func:`collect_quant_stats` that feeds the batches of ``loader``.

    A batch is an input tensor or an ``(inputs, targets, ...)`` tuple/list; targets are ignored. When
    the inputs are themselves a tuple/list, they are passed as separate arguments. Inputs are moved
    to ``device`` (the model must already be there). ``loader`` is iterated once per pass, so it must
    yield the same batches each time (no shuffling, or a fixed seeded subset).

    Args:
        loader: a DataLoader or any re-iterable of batches.
        device: where the inputs go.
        max_batches: stop after this many batches (default: the whole loader).

    Raises:
        ConfigError: ``max_batches`` is not positive, or a batch is neither a tensor nor a sequence.
    """
    if max_batches is not None and max_batches < 1:
        raise ConfigError(f"calibration_forward: max_batches must be a positive count; got {max_batches}.")

    def run_forward(model: nn.Module) -> None:
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            if isinstance(batch, (list, tuple)):
                if not batch:
                    raise ConfigError(f"Calibration batch {index} is an empty sequence; expected (inputs, targets).")
                batch = batch[0]
            if not isinstance(batch, (torch.Tensor, list, tuple)):
                raise ConfigError(
                    f"Calibration batch {index} holds a {type(batch).__name__}; expected a tensor or an "
                    "(inputs, targets) tuple."
                )
            inputs = _move(batch, device)
            if isinstance(inputs, torch.Tensor):
                model(inputs)
            else:
                model(*inputs)

    return run_forward
