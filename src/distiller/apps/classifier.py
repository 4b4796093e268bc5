"""The image-classifier compression app: wiring of model, data, optimizer, scheduler, checkpoints.

``distiller classify`` and ``examples/classifier_compression/compress_classifier.py`` parse their
flags into :class:`ClassifierOptions` and call :func:`run_classifier`. The training itself is in
:mod:`distiller.apps.loops`; this module only decides what runs, in which order, and what is saved.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from distiller.analysis.activations import SummaryActivationStatsCollector
from distiller.apps.activation_stats import PhaseCollectors, activation_histograms_mode
from distiller.apps.amc_mode import amc_mode
from distiller.apps.data_loggers import (
    close_loggers,
    console_loggers,
    create_loggers,
    log_epoch_weights,
    log_eval_summary,
)
from distiller.apps.ddp import process_batch_size, sampler_kwargs, shared_seed, training_pair
from distiller.apps.earlyexit import EarlyExitRun, log_exit_stats
from distiller.apps.greedy_mode import greedy_pruning_mode
from distiller.apps.loops import EvalResult, TrainResult, evaluate, train_one_epoch
from distiller.apps.optimizers import build_optimizer
from distiller.apps.options import ClassifierOptions
from distiller.apps.performance_tracker import SparsityAccuracyTracker
from distiller.apps.ptq import (
    calibration_only,
    check_ptq_options,
    int8_model_of_qat,
    quantize_and_evaluate,
    resume_quantized,
)
from distiller.apps.reports import export_onnx_file, run_summary
from distiller.apps.run_data import load_run_data, model_dataset
from distiller.apps.sensitivity_mode import sensitivity_analysis
from distiller.checkpoint import build_checkpoint, load_checkpoint, load_lean_checkpoint, save_checkpoint
from distiller.checkpoint.save import atomic_save
from distiller.config import file_config
from distiller.determinism import derive_seed, seed_everything, set_deterministic
from distiller.distillation import build_kd_policy, create_teacher
from distiller.distributed.process_group import current as distributed_context
from distiller.early_exit import final_output
from distiller.errors import ConfigError
from distiller.models import create_model, dataset_for_arch
from distiller.scheduler import CompressionScheduler
from distiller.summary import render_masks_sparsity_summary
from distiller.thinning import find_zero_conv_layers, resnet_cifar_remove_layers, thin_model

log = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    """One row of the training history."""

    epoch: int
    train: TrainResult
    valid: EvalResult
    lr: float


@dataclass
class ClassifierResult:
    """What a run produced: the final test evaluation, the history and the files it saved."""

    test: EvalResult | None
    history: list[EpochRecord] = field(default_factory=list)
    saved: list[Path] = field(default_factory=list)
    best: str | None = None
    reports: list[str] = field(default_factory=list)


def select_device(opts: ClassifierOptions) -> torch.device:
    """``--cpu`` or no CUDA → CPU; otherwise the first of ``--gpus`` (single-device training)."""
    if opts.cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    if opts.gpus:
        try:
            ids = [int(x) for x in opts.gpus.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--gpus expects a comma-separated list of device ids, got {opts.gpus!r}.") from None
        available = torch.cuda.device_count()
        bad = [i for i in ids if i >= available]
        if bad:
            raise ConfigError(f"--gpus: device id(s) {bad} do not exist; this machine has {available} GPU(s).")
        if len(ids) > 1:
            log.warning("Training uses one device (cuda:%d); use torchrun for several GPUs.", ids[0])
        return torch.device(f"cuda:{ids[0]}")
    return torch.device("cuda:0")


class ClassifierApp:
    """State of one run; built by :func:`run_classifier`."""

    def __init__(self, opts: ClassifierOptions, run_dir: Path) -> None:
        self.opts = opts
        self.run_dir = run_dir
        self.dist = distributed_context()  # this process's place in a torchrun job; None in a single process
        self.device = self.dist.device if self.dist is not None else select_device(opts)
        self.deterministic = opts.deterministic or opts.evaluate
        self.seed = opts.seed if opts.seed is not None else (0 if self.deterministic else random.randint(1, 100000))
        self.seed = shared_seed(self.seed, self.dist)
        if self.deterministic:
            set_deterministic(True)
        seed_everything(self.seed)
        self.dataset = opts.dataset or dataset_for_arch(opts.arch)
        self.model: nn.Module = create_model(
            opts.arch,
            model_dataset(self.dataset),
            pretrained=opts.pretrained or bool(opts.pretrained_weights),
            weights_path=opts.pretrained_weights,
            device=self.device,
        )
        self.criterion = nn.CrossEntropyLoss().to(self.device)
        # Early exit: the --earlyexit_* settings, checked against the model; None for a model without exits.
        self.earlyexit = EarlyExitRun.for_model(self.model, opts)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = CompressionScheduler(self.model, self.device)
        self.tracker = SparsityAccuracyTracker(opts.num_best_scores)
        self.start_epoch = 0
        self.resumed_extras: dict = {}
        self.schedule: tuple[str, str] | None = None  # (file name, YAML text) of the --compress schedule
        self.saved: list[Path] = []
        self.compression_attached = False
        self.loggers = create_loggers(run_dir, opts) if self.dist is None or self.dist.is_main else []
        # (epoch, completed, total) at which evaluation summaries are logged: the end of the last trained
        # epoch on the training-step axis; (-1, 0, 0) outside training.
        self.log_position: tuple[int, int, int] = (-1, 0, 0)
        self._phase_collectors: PhaseCollectors | None = None
        self._load_weights()
        self._check_zero_layers()

    # --- setup -------------------------------------------------------------------------------

    def _new_optimizer(self, name: str | None = None) -> torch.optim.Optimizer:
        o = self.opts
        return build_optimizer(name or o.optimizer, self.model.parameters(), o.lr, o.momentum, o.weight_decay)

    def _load_weights(self) -> None:
        o = self.opts
        if o.resume_from:
            quantized = resume_quantized(o.resume_from, self.model)
            if quantized is not None:
                self.model = quantized
            if self._resume_after_qat_start(o.resume_from):
                return
            loaded = load_checkpoint(
                o.resume_from, self.model, device=self.device, already_thinned=quantized is not None
            )
            if loaded.scheduler_state:
                # Masks always carry over; policy state (LR, pruner statistics) only when continuing the run.
                state = loaded.scheduler_state
                if o.reset_optimizer:
                    state = {"masks_dict": state.get("masks_dict", {})}
                self.scheduler = CompressionScheduler(self.model, self.device)
                self.scheduler.load_state_dict(state)
            if o.reset_optimizer:
                log.info("Resumed weights from %s; --reset-optimizer: starting at epoch 0", o.resume_from)
                return
            self.start_epoch = loaded.start_epoch
            extras = self.resumed_extras = dict(loaded.extras or {})
            if o.seed is None and "seed" in extras:
                self.seed = int(extras["seed"])
            if "best_scores" in extras:
                self.tracker.load_state_dict(extras["best_scores"])
            if loaded.optimizer_state and not o.evaluate:
                self.optimizer = self._new_optimizer(loaded.optimizer_type or o.optimizer)
                self.optimizer.load_state_dict(loaded.optimizer_state)
            log.info("Resumed from %s (epoch %d)", o.resume_from, loaded.epoch)
        elif o.exp_load_weights_from:
            load_lean_checkpoint(o.exp_load_weights_from, self.model)
            self.model.to(self.device)
            log.info("Loaded weights from %s", o.exp_load_weights_from)

    def _resume_after_qat_start(self, path: str) -> bool:
        """Resume a run whose quantization-aware training had started (the model must be re-prepared).

        The quantizer adds parameters (float weight copies, PACT's clipping values) and optimizer
        groups when its policy first fires, so the saved state fits only a prepared model: build the
        optimizer on the float model, the schedule with it, let the scheduler's state re-prepare the
        model, and only then load the weights and the optimizer state.
        """
        from distiller.checkpoint import read_checkpoint
        from distiller.scheduler.policies import quantization_prepared

        ckpt = read_checkpoint(path)
        state = ckpt.get("compression_sched")
        if not quantization_prepared(state):
            return False
        o = self.opts
        epoch = ckpt.get("epoch") or 0
        self.start_epoch = 0 if o.reset_optimizer else int(epoch) + 1
        self.resumed_extras = dict(ckpt.get("extras") or {})
        if o.seed is None and "seed" in self.resumed_extras:
            self.seed = int(self.resumed_extras["seed"])
        if "best_scores" in self.resumed_extras and not o.reset_optimizer:
            self.tracker.load_state_dict(self.resumed_extras["best_scores"])
        self.optimizer = self._new_optimizer(ckpt.get("optimizer_type") or o.optimizer)
        self.attach_compression()
        self.compression_attached = True
        self.scheduler.load_state_dict(state)
        loaded = load_checkpoint(path, self.model, device=self.device)
        if loaded.optimizer_state and not (o.evaluate or o.reset_optimizer):
            self.optimizer.load_state_dict(loaded.optimizer_state)
        log.info("Resumed from %s (epoch %d), quantization-aware training re-prepared", path, loaded.epoch)
        return True

    def _check_zero_layers(self) -> None:
        zero = find_zero_conv_layers(self.model)
        if not zero:
            return
        if self.opts.remove_zero_layers:
            removed = resnet_cifar_remove_layers(self.model)
            log.info("Bypassed %d all-zero layer(s): %s", len(removed), ", ".join(removed))
        elif hasattr(self.model, "layer_gates"):
            log.warning(
                "%d convolution layer(s) have all-zero weights (%s). If the checkpoint was fine-tuned with "
                "those layers removed, pass --remove-zero-layers to bypass them.",
                len(zero),
                ", ".join(zero),
            )

    def _schedule_file(self) -> Path | None:
        """``--compress``, or, when resuming without it, the schedule stored in the checkpoint."""
        if self.opts.compress:
            return Path(self.opts.compress)
        stored = self.resumed_extras.get("compress")
        if not stored:
            return None
        path = self.run_dir / "configs" / Path(stored["name"]).name
        path.parent.mkdir(exist_ok=True)
        path.write_text(stored["yaml"])
        log.info("Continuing the compression schedule stored in the checkpoint (%s)", stored["name"])
        return path

    def attach_compression(self) -> None:
        """Add the schedule's policies (and the CLI's knowledge distillation) to the scheduler."""
        o = self.opts
        path = self._schedule_file()
        if path is not None:
            resumed_epoch = self.start_epoch - 1 if self.start_epoch > 0 else None
            file_config(self.model, self.optimizer, path, scheduler=self.scheduler, resumed_epoch=resumed_epoch)
            self.schedule = (path.name, path.read_text())
        if o.kd_teacher:
            teacher = create_teacher(
                o.kd_teacher,
                getattr(self.model, "dataset", None),
                pretrained=o.kd_pretrained,
                checkpoint=o.kd_resume,
                device=self.device,
            )
            policy = build_kd_policy(
                self.model, teacher, o.kd_temperature, o.kd_distill_wt, o.kd_student_wt, o.kd_teacher_wt
            )
            self.scheduler.add_policy(policy, starting_epoch=o.kd_start_epoch, ending_epoch=o.epochs, frequency=1)
            log.info("Knowledge distillation from %s from epoch %d", o.kd_teacher, o.kd_start_epoch)

    def activation_collectors(self) -> list[SummaryActivationStatsCollector]:
        """Collectors of the statistics that the schedule's activation-ranked pruners rank by."""
        needed = {
            getattr(getattr(policy, "pruner", None), "activation_rank_criterion", None)
            for policies in self.scheduler.policies.values()
            for policy in policies
        } - {None}
        return [SummaryActivationStatsCollector(self.model, stat) for stat in sorted(needed)]

    @torch.no_grad()
    def prime_activation_stats(self, collectors: list[SummaryActivationStatsCollector], loaders) -> None:
        """Record first statistics on a fixed training subset, so pruners that fire at the first epoch
        rank by data rather than by nothing (later epochs use the previous epoch's training pass)."""
        calibration = loaders.calibration_loader(min(1024, len(loaders.train_indices)))
        self.model.eval()
        for collector in collectors:
            collector.start()
        for inputs, _ in calibration:
            self.model(inputs.to(self.device))
        for collector in collectors:
            collector.stop()
        log.info(
            "Activation statistics (%s) primed on %d training samples",
            ", ".join(c.stat_name for c in collectors),
            len(calibration.sampler),
        )

    @property
    def phase_collectors(self) -> PhaseCollectors:
        """``--act-stats`` collectors of the current model (quantization or thinning may replace it)."""
        if self._phase_collectors is None or self._phase_collectors.model is not self.model:
            self._phase_collectors = PhaseCollectors(self.model, self.opts.analysis.activation_stats)
        return self._phase_collectors

    def _log_activation_stats(self, phase: str, epoch: int) -> None:
        """Send ``phase``'s activation sparsity to the data loggers and (re)write its statistics files."""
        acts = self.phase_collectors
        if not acts.enabled(phase):
            return
        sparsity = acts.sparsity(phase)
        for logger in self.loggers:
            logger.log_activation_statistic(phase, "sparsity_ofm", sparsity, epoch)
        self.saved.extend(p for p in acts.save(self.run_dir, phase) if p not in self.saved)

    def _data(self, test_only: bool):
        return load_run_data(
            self.opts,
            self.dataset,
            self.model,
            batch_size=process_batch_size(self.opts.batch_size, self.dist),
            deterministic=self.deterministic,
            seed=self.seed,
            test_only=test_only,
            **sampler_kwargs(self.dist),
        )

    # --- modes ---------------------------------------------------------------------------------

    def test(self, loaders=None) -> EvalResult:
        loaders = loaders or self._data(test_only=True)
        num_classes = loaders.num_classes if self.opts.confusion else None
        with self.phase_collectors.phase("test"):
            if self.earlyexit is not None:  # early exit: simulated exiting, per-exit statistics
                test = self.earlyexit.evaluate(
                    self.model, loaders.test, device=self.device, progress=self.opts.progress, desc="test",
                    loggers=console_loggers(self.loggers), print_freq=self.opts.print_freq, phase="test",
                )
            else:
                test = evaluate(
                    self.model, loaders.test, self.criterion, self.device, num_classes, self.opts.progress, "test",
                    loggers=console_loggers(self.loggers), print_freq=self.opts.print_freq, phase="test",
                )
        log_exit_stats(test, "Test:")
        log_eval_summary(self.loggers, "test", test, *self.log_position)
        self._log_activation_stats("test", self.log_position[0])
        close_loggers(self.loggers)  # the test is the last record of a run; a later record reopens
        return test

    def _save(self, epoch: int, is_best: bool, current: EvalResult, name: str | None = None) -> None:
        if self.dist is not None and not self.dist.is_main:
            return  # rank 0 alone writes checkpoints
        best = self.tracker.best()
        extras = {
            "current_top1": current.top1,
            "current_top5": current.top5,
            "best_top1": best.top1 if best else current.top1,
            "best_epoch": best.epoch if best else epoch,
            "best_scores": self.tracker.state_dict(),
            "seed": self.seed,
        }
        if self.schedule is not None:
            extras["compress"] = {"name": self.schedule[0], "yaml": self.schedule[1]}
        paths = save_checkpoint(
            self.run_dir,
            model=self.model,
            arch=self.opts.arch,
            dataset=self.dataset,
            epoch=epoch,
            optimizer=self.optimizer,
            scheduler_state=self.scheduler.state_dict(),
            extras=extras,
            is_best=is_best,
            name=name if name is not None else self.opts.name,
        )
        for path in paths:
            log.debug("Saved: %s", path)
        self.saved.extend(p for p in paths if p not in self.saved)

    def train(self) -> ClassifierResult:
        o = self.opts
        if self.start_epoch >= o.epochs:
            raise ConfigError(
                f"Nothing to train: the run starts at epoch {self.start_epoch} and --epochs is {o.epochs}. "
                "Raise --epochs, or pass --reset-optimizer to start over from epoch 0."
            )
        # Early exit: the weighted loss over all exits (checks --earlyexit_* before any data is read).
        train_criterion = self.earlyexit.criterion() if self.earlyexit is not None else self.criterion
        if self.optimizer is None:
            self.optimizer = self._new_optimizer()
        if not self.compression_attached:
            self.attach_compression()
        if o.save_untrained_model:
            # epoch -1: resuming from it starts at epoch 0, as before any training step
            self._save(-1, False, EvalResult(0.0, 0.0, 0.0), name="_".join(filter(None, [o.name, "untrained"])))
        loaders = self._data(test_only=False)
        collectors = self.activation_collectors()
        if collectors:
            self.prime_activation_stats(collectors, loaders)
        train_model, scheduler = training_pair(self, collectors)  # DDP and rank-synchronized hooks under torchrun
        history: list[EpochRecord] = []
        for epoch in range(self.start_epoch, o.epochs):
            if self.deterministic:
                seed_everything(derive_seed(self.seed, "epoch", epoch))
            loaders.set_epoch(epoch)
            scheduler.on_epoch_begin(epoch, self.optimizer)
            lr = self.optimizer.param_groups[0]["lr"]
            for collector in collectors:  # pruners read these at the next epoch's beginning
                collector.reset().start()
            with self.phase_collectors.phase("train"):
                train = train_one_epoch(
                    train_model,
                    loaders.train,
                    train_criterion,
                    self.optimizer,
                    scheduler,
                    epoch,
                    self.device,
                    o.print_freq,
                    o.progress,
                    loggers=self.loggers,
                    output_logits=final_output if self.earlyexit is not None else None,
                )
            for collector in collectors:
                collector.stop()
            steps = len(loaders.train)
            log_epoch_weights(self.loggers, self.model, epoch, steps * (epoch + 1), o.analysis.param_hist)
            with self.phase_collectors.phase("valid"):
                if self.earlyexit is not None:  # early exit: simulated exiting, per-exit statistics
                    valid = self.earlyexit.evaluate(
                        self.model, loaders.valid, device=self.device, progress=o.progress, desc="valid",
                        loggers=console_loggers(self.loggers), epoch=epoch, print_freq=o.print_freq, phase="valid",
                    )
                else:
                    valid = evaluate(
                        self.model, loaders.valid, self.criterion, self.device, None, o.progress, "valid",
                        loggers=console_loggers(self.loggers), epoch=epoch, print_freq=o.print_freq, phase="valid",
                    )
            log_exit_stats(valid, f"Epoch {epoch} validation:")
            self.log_position = (epoch, steps, steps)
            log_eval_summary(self.loggers, "valid", valid, *self.log_position)
            for phase in ("train", "valid"):
                self._log_activation_stats(phase, epoch)
            log.info(
                "Epoch %d: train loss %.4f, train top-1 %.3f | valid top-1 %.3f, top-5 %.3f, loss %.4f (%.1fs)",
                epoch,
                train.losses["Overall Loss"],
                train.top1,
                valid.top1,
                valid.top5,
                valid.loss,
                train.seconds,
            )
            scheduler.on_epoch_end(epoch, self.optimizer, metrics={"min": valid.loss, "max": valid.top1})
            self.tracker.step(self.model, epoch, valid.top1, valid.top5)
            if o.masks_sparsity:
                log.info("Masks sparsity:\n%s", render_masks_sparsity_summary(self.model, self.scheduler.masks))
            for score in self.tracker.scores:
                log.info(score.describe())
            best = self.tracker.best()
            self._save(epoch, is_best=best is not None and best.epoch == epoch, current=valid)
            history.append(EpochRecord(epoch, train, valid, lr))
        test = self.test(loaders)
        best = self.tracker.best()
        return ClassifierResult(test, history, list(self.saved), best.describe() if best else None)

    def summaries(self) -> ClassifierResult:
        """``--summary``: reports on the (resumed) model, in the order asked; reads no data."""
        reports = []
        for kind in self.opts.summary:
            report = run_summary(kind, self.model, self.run_dir, self.opts.arch)
            self.saved.extend(report.saved)
            if report.text is not None:
                reports.append(report.text)
        return ClassifierResult(None, saved=list(self.saved), reports=reports)

    def no_training(self) -> ClassifierResult:
        """``--export-onnx`` alone: the model is exported as loaded (by the step that follows), not trained."""
        return ClassifierResult(None, saved=list(self.saved))

    def export_onnx(self, result: ClassifierResult) -> None:
        """``--export-onnx [PATH]``: the last step of a run (DESIGN §7); reads no data, except that a
        quantization-aware trained model is converted to int8 first (calibrating its float tensors)."""
        model = int8_model_of_qat(self)
        path = export_onnx_file(model, self.opts.export_onnx or "", self.run_dir, self.opts.arch)
        self.saved.append(path)
        result.saved.append(path)

    def evaluate_only(self) -> ClassifierResult:
        return ClassifierResult(self.test(), saved=list(self.saved))

    def evaluate_onnx(self) -> ClassifierResult:
        """``--evaluate --onnx-model FILE``: the test set through the ONNX file in ONNX Runtime (CPU), with the
        loader, transforms and batch size of ``--evaluate``; the PyTorch model only tells the dataset."""
        from distiller.export.onnx_runtime import OnnxRuntimeModel

        model = OnnxRuntimeModel(self.opts.onnx_model)  # fails before the data is read
        log.info(
            "Evaluating %s in ONNX Runtime (CPU), input %s%s",
            model.path,
            model.expected_input(),
            "; its final softmax removed, the loss is on logits" if model.softmax_removed else "",
        )
        loaders = self._data(test_only=True)
        num_classes = loaders.num_classes if self.opts.confusion else None
        test = evaluate(model, loaders.test, self.criterion, "cpu", num_classes, self.opts.progress, "test (onnx)")
        return ClassifierResult(test, saved=list(self.saved))

    def thinnify(self) -> None:
        """``--thinnify``: remove the resumed checkpoint's masked (or all-zero) filters and channels and
        save the smaller model as ``<log dir>/<checkpoint stem>_thinned.pth.tar``."""
        source = self.opts.resume_from or self.opts.exp_load_weights_from
        if not source:
            raise ConfigError("--thinnify thins a trained model: give it with --resume-from CHECKPOINT.")
        masks = self.scheduler.masks if any(m.mask is not None for m in self.scheduler.masks.values()) else None
        before = sum(p.numel() for p in self.model.parameters())
        dataset = None if getattr(self.model, "input_shape", None) else self.dataset
        report = thin_model(self.model, masks, dataset=dataset, optimizer=self.optimizer)
        after = sum(p.numel() for p in self.model.parameters())
        log.info(
            "Thinning removed %d channels in %d groups: parameters %d -> %d%s",
            report.num_removed,
            len(report.removed),
            before,
            after,
            f" ({sum(report.kept_reasons.values())} masked channels kept: {report.kept_reasons})"
            if report.kept_reasons
            else "",
        )
        stem = Path(source).name.removesuffix(".pth.tar").removesuffix(".pth")
        path = self.run_dir / f"{stem}_thinned.pth.tar"
        checkpoint = build_checkpoint(
            model=self.model,
            arch=self.opts.arch,
            dataset=self.dataset,
            epoch=max(self.start_epoch - 1, 0),
            optimizer=self.optimizer,
            scheduler_state=self.scheduler.state_dict(),
            extras=dict(self.resumed_extras),
        )
        if self.dist is None or self.dist.is_main:  # rank 0 alone writes files
            atomic_save(checkpoint, path)
        self.saved.append(path)

    def thinnify_only(self) -> ClassifierResult:
        return ClassifierResult(None, saved=list(self.saved))


def check_onnx_model(opts: ClassifierOptions) -> None:
    """``--onnx-model`` evaluates the weights in an ONNX file: it needs ``--evaluate``, and does not combine
    with the flags that load, change or export the PyTorch model (DESIGN §7)."""
    if opts.onnx_model is None:
        return
    if not opts.evaluate:
        raise ConfigError("--onnx-model FILE evaluates an ONNX file on the test set; it needs --evaluate.")
    others = {
        "--summary": bool(opts.summary),
        "--thinnify": opts.thinnify,
        "--export-onnx": opts.export_onnx is not None,
        "--compress": bool(opts.compress),
        "--resume-from": bool(opts.resume_from),
        "--exp-load-weights-from": bool(opts.exp_load_weights_from),
        "--pretrained": opts.pretrained or bool(opts.pretrained_weights),
        "--kd-teacher": bool(opts.kd_teacher),
        "--quantize-eval": opts.quant.quantize_eval,
        "--qe-calibration": opts.quant.calibration is not None,
    }
    given = [flag for flag, on in others.items() if on]
    if given:
        raise ConfigError(
            f"--onnx-model does not combine with {', '.join(given)}: it evaluates the weights stored in the ONNX "
            "file, not the PyTorch model. Export the model first (--export-onnx), then evaluate the file alone."
        )


# The app's modes, tried in order; the first that applies runs (DESIGN §5).
MODES = (
    ("onnx-model", lambda o: o.onnx_model is not None, ClassifierApp.evaluate_onnx),
    ("summary", lambda o: bool(o.summary), ClassifierApp.summaries),
    ("qe-calibration", lambda o: o.quant.calibration_only, calibration_only),
    ("quantize-eval", lambda o: o.evaluate and o.quant.quantize_eval, quantize_and_evaluate),
    ("act-hist", lambda o: o.analysis.activation_histograms is not None, activation_histograms_mode),
    ("greedy", lambda o: o.greedy.enabled, greedy_pruning_mode),
    ("sensitivity", lambda o: o.analysis.sensitivity is not None, sensitivity_analysis),
    ("amc", lambda o: o.amc.enabled, amc_mode),
    ("evaluate", lambda o: o.evaluate, ClassifierApp.evaluate_only),
    ("thinnify", lambda o: o.thinnify, ClassifierApp.thinnify_only),
    ("export-onnx", lambda o: o.export_onnx is not None, ClassifierApp.no_training),
    ("train", lambda o: True, ClassifierApp.train),
)

# Steps that follow the mode, in the order of DESIGN §7.
STEPS = (("export-onnx", lambda o: o.export_onnx is not None, ClassifierApp.export_onnx),)


def run_classifier(opts: ClassifierOptions, run_dir: Path) -> ClassifierResult:
    """Run the app in the first mode the options ask for, then the steps that follow it."""
    check_onnx_model(opts)
    check_ptq_options(opts)
    app = ClassifierApp(opts, run_dir)
    if opts.thinnify:  # load -> thinnify -> the other modes (DESIGN §7)
        app.thinnify()
    result = next(mode(app) for _, applies, mode in MODES if applies(opts))
    for _, applies, step in STEPS:
        if applies(opts):
            step(app, result)
    return result
