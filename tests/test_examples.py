"""The example schedules under ``examples/``: each validates, each runs, and together they cover
every pruner and regularizer class.

Every example starts with a comment header holding machine-readable lines::

    # arch: simplenet_digits          the architecture the schedule is written for (required)
    # dataset: digits                 its dataset (optional; default: the architecture's own)
    # runner: examples/.../script.py  a script to run it with instead of `distiller classify`

A runner is a Python file with a ``classify(argv) -> int`` function taking the flags of
``distiller classify``; importing it may register models (``lstm_digits``).

Knowledge-distillation examples name a teacher checkpoint that the user trains first; here it is
replaced by a checkpoint made by a one-epoch run on fake data (the only change made to a file).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import yaml

from shared_data import REPO_ROOT, RESULT_LINE

EXAMPLES = REPO_ROOT / "examples"
SCHEDULES = sorted(EXAMPLES.rglob("*.yaml"))
HEADER_KEY = re.compile(r"^#\s*(arch|dataset|runner):\s*(\S+)\s*$")
MAX_TEST_EPOCHS = 10
TINY = ("--etrs", "64", "--evs", "32", "--etes", "32", "-b", "32", "-j", "0", "--deterministic")


def _id(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


def header_lines(path: Path) -> list[str]:
    """The comment block at the top of a schedule."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def header(path: Path) -> dict[str, str]:
    """The ``arch``/``dataset``/``runner`` lines of the header."""
    found = {}
    for line in header_lines(path):
        match = HEADER_KEY.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def load_runner(relative: str) -> ModuleType:
    """Import a runner script by path, once, and (re-)register the models it defines."""
    path = REPO_ROOT / relative
    name = "examples_runner_" + re.sub(r"\W", "_", str(Path(relative).with_suffix("")))
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    module = sys.modules[name]
    if callable(getattr(module, "register", None)):
        module.register()
    return module


@pytest.fixture(scope="module", autouse=True)
def _restore_model_registry():
    """Runners register example models (lstm_digits); leave the registry as this module found it."""
    from distiller.models import MODELS

    saved = dict(MODELS._entries)
    yield
    MODELS._entries = saved


def schedule_dict(path: Path, teacher_checkpoint: Path) -> dict[str, Any]:
    """The schedule as a dict, with the teacher checkpoint of any ``distillation:`` entry replaced."""
    data = yaml.safe_load(path.read_text())
    for component in (data.get("distillation") or {}).values():
        if component.get("teacher_checkpoint"):
            component["teacher_checkpoint"] = str(teacher_checkpoint)
    return data


def schedule_file(path: Path, teacher_checkpoint: Path, tmp_path: Path) -> Path:
    """``path`` itself, or a copy whose teacher checkpoint points at the test's one."""
    text = path.read_text()
    if "teacher_checkpoint:" not in text:
        return path
    text = re.sub(r"(?m)^(\s*teacher_checkpoint:).*$", lambda m: f"{m.group(1)} {teacher_checkpoint}", text)
    copy = tmp_path / path.name
    copy.write_text(text)
    return copy


def build_model(meta: dict[str, str]) -> torch.nn.Module:
    from distiller.models import create_model

    if "runner" in meta:
        load_runner(meta["runner"])
    return create_model(meta["arch"], meta.get("dataset"))


def test_every_example_has_a_complete_header():
    assert len(SCHEDULES) >= 20, SCHEDULES
    for path in SCHEDULES:
        meta, text = header(path), "\n".join(header_lines(path))
        assert "arch" in meta, f"{_id(path)}: no '# arch:' line"
        assert f"-a {meta['arch']} " in text, f"{_id(path)}: the run command does not use -a {meta['arch']}"
        assert "--compress examples/" + _id(path) in text, f"{_id(path)}: the run command does not run this file"
        assert RESULT_LINE.search(text), f"{_id(path)}: no measured '==> Top1: ...' result in the header"
        if "runner" in meta:
            assert (REPO_ROOT / meta["runner"]).is_file(), meta["runner"]


def _run_file(out_dir: Path, name: str) -> Path:
    """``name`` in the one run folder under ``out_dir`` (not through its ``latest_log_dir`` link)."""
    (found,) = [p for p in out_dir.glob(f"*/{name}") if not p.parent.is_symlink()]
    return found


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory) -> Path:
    """A simplenet_mnist checkpoint from a one-epoch run on fake data (the KD examples' teacher)."""
    from distiller.cli.main import main

    out = tmp_path_factory.mktemp("teacher")
    code = main(["classify", "-a", "simplenet_mnist", "--dataset", "fake", *TINY, "--epochs", "1", "-o", str(out)])
    assert code == 0
    return _run_file(out, "best.pth.tar")


@pytest.mark.parametrize("path", SCHEDULES, ids=_id)
def test_example_validates(path, teacher_checkpoint):
    from distiller.config import validate_schedule

    meta = header(path)
    plan = validate_schedule(schedule_dict(path, teacher_checkpoint), build_model(meta))
    assert plan.policies
    assert not plan.warnings, plan.warnings


def epochs_to_fire(path: Path, meta: dict[str, str], teacher_checkpoint: Path) -> tuple[int, list]:
    """The smallest epoch count in which every policy fires once (capped), and the plan."""
    from distiller.config import validate_schedule

    plan = validate_schedule(schedule_dict(path, teacher_checkpoint), build_model(meta))
    firsts = [p.window.start for p in plan.policies if p.window.unit == "epoch"]
    return min(max(firsts, default=0) + 1, MAX_TEST_EPOCHS), plan.policies


def _pruned_tensors_that_keep_masks(policies, epochs: int) -> list[tuple[str, list[str]]]:
    """``(policy name, its tensors)`` of the pruning policies that fire and leave their masks in place."""
    out = []
    for policy in policies:
        if policy.kind != "pruner" or policy.args.get("discard_masks_at_minibatch_end"):
            continue
        if any(policy.window.fires(e) for e in range(epochs)):
            out.append((policy.instance_name, [t for t in policy.tensors if not t.startswith("*")]))
    return out


@pytest.mark.parametrize("path", SCHEDULES, ids=_id)
def test_example_runs(path, teacher_checkpoint, tmp_path, capsys):
    meta = header(path)
    epochs, policies = epochs_to_fire(path, meta, teacher_checkpoint)
    dataset = "digits" if meta.get("dataset") == "digits" else "fake"
    argv = [
        "-a", meta["arch"], "--dataset", dataset, *TINY, "--epochs", str(epochs),
        "--compress", str(schedule_file(path, teacher_checkpoint, tmp_path)), "-o", str(tmp_path / "logs"),
    ]
    if "runner" in meta:
        code = load_runner(meta["runner"]).classify(argv)
    else:
        from distiller.cli.main import main

        code = main(["classify", *argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    top1_lines = [line for line in captured.out.splitlines() if "Top1" in line]
    assert top1_lines and RESULT_LINE.search(top1_lines[-1]), captured.out
    checkpoint = _run_file(tmp_path / "logs", "checkpoint.pth.tar")
    saved = torch.load(checkpoint, weights_only=True)
    masks = saved["compression_sched"]["masks_dict"]
    if "Remover" in path.read_text():  # a thinning extension fired: the smaller model was trained on and saved
        assert saved["thinning_plans"], f"{_id(path)}: the thinning extension removed nothing"
    for name, tensors in _pruned_tensors_that_keep_masks(policies, epochs):
        assert any(masks.get(t) is not None for t in tensors), f"pruner {name!r} fired but left no mask"


def _classes(section: str) -> set[str]:
    used = set()
    for path in SCHEDULES:
        data = yaml.safe_load(path.read_text()) or {}
        used |= {spec["class"] for spec in (data.get(section) or {}).values()}
    return used


def _builtin(registry) -> set[str]:
    """Registered names of the library's own classes (tests may register user classes too)."""
    return {name for name, cls in registry.items() if getattr(cls, "__module__", "").startswith("distiller.")}


def test_examples_cover_every_pruner_and_regularizer():
    from distiller.pruning import PRUNERS
    from distiller.regularization import REGULARIZERS

    assert _classes("pruners") == _builtin(PRUNERS)
    assert _classes("regularizers") == _builtin(REGULARIZERS)


def test_examples_cover_the_usual_lr_schedulers_and_distillation():
    assert {"StepLR", "MultiStepLR", "ExponentialLR", "ReduceLROnPlateau", "PolynomialLR",
            "MultiStepMultiGammaLR"} <= _classes("lr_schedulers")
    assert _classes("distillation") == {"KnowledgeDistillation"}
