"""The typed options of the image-classifier app (what the CLI flags parse into)."""

from __future__ import annotations

from dataclasses import dataclass, field

from distiller.apps.amc_options import AMCOptions
from distiller.apps.analysis_options import AnalysisOptions
from distiller.apps.ddp_options import DDPOptions
from distiller.apps.earlyexit_options import EarlyExitOptions
from distiller.apps.greedy_options import GreedyOptions
from distiller.apps.ptq_options import PtqOptions


@dataclass
class ClassifierOptions:
    """Everything ``distiller classify`` can be asked to do; defaults are the original's."""

    arch: str = "resnet18"
    data_dir: str | None = None
    dataset: str | None = None
    workers: int = 4
    epochs: int = 90
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    print_freq: int = 10
    verbose: bool = False
    evaluate: bool = False
    deterministic: bool = False
    seed: int | None = None
    gpus: str | None = None
    cpu: bool = False
    name: str | None = None
    out_dir: str = "logs"
    validation_split: float = 0.1
    effective_train_size: float = 1.0
    effective_valid_size: float = 1.0
    effective_test_size: float = 1.0
    confusion: bool = False
    num_best_scores: int = 1
    load_serialized: bool = False
    resume_from: str | None = None
    exp_load_weights_from: str | None = None
    pretrained: bool = False
    pretrained_weights: str | None = None
    reset_optimizer: bool = False
    save_untrained_model: bool = False
    remove_zero_layers: bool = False
    thinnify: bool = False
    summary: list[str] = field(default_factory=list)
    export_onnx: str | None = None  # "" = the default file, <log dir>/<arch>.onnx
    onnx_model: str | None = None  # --evaluate this ONNX file in ONNX Runtime instead of the model
    masks_sparsity: bool = False
    compress: str | None = None
    kd_teacher: str | None = None
    kd_pretrained: bool = False
    kd_resume: str | None = None
    kd_temperature: float = 1.0
    kd_distill_wt: float = 0.5
    kd_student_wt: float = 0.5
    kd_teacher_wt: float = 0.0
    kd_start_epoch: int = 0
    progress: bool = True
    config_files: list[str] = field(default_factory=list)
    quant: PtqOptions = field(default_factory=PtqOptions)  # --qe-* / --lapq-*
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)  # --sense*, --act-*, --param-hist
    earlyexit: EarlyExitOptions = field(default_factory=EarlyExitOptions)  # --earlyexit_*
    greedy: GreedyOptions = field(default_factory=GreedyOptions)  # --greedy*
    amc: AMCOptions = field(default_factory=AMCOptions)  # --amc*
    ddp: DDPOptions = field(default_factory=DDPOptions)  # --ddp-* (runs started by torchrun)
