"""The documentation site: generated references are complete, and the site builds with --strict."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "gen" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schedule_page() -> str:
    return _load("schedule_reference").render()


@pytest.fixture(scope="module")
def cli_page() -> str:
    return _load("cli_reference").render()


def test_schedule_reference_lists_every_registered_class(schedule_page):
    from distiller.config.build import REGISTRY_OF_SECTION
    from distiller.config.schema import SECTIONS, TIMING_KEYS

    for section in SECTIONS:
        module, attribute = REGISTRY_OF_SECTION[section]
        registry = getattr(importlib.import_module(module), attribute)
        assert len(registry) > 0, section
        for name in registry.names():
            assert f"### `{name}`" in schedule_page, f"{section}: {name} missing from the schedule reference"
    for key in TIMING_KEYS:
        assert f"| `{key}` |" in schedule_page


def test_schedule_reference_lists_constructor_arguments(schedule_page):
    from distiller.pruning import PRUNERS

    cls = PRUNERS.get("AutomatedGradualPruner")
    for param in inspect.signature(cls).parameters:
        assert f"| `{param}` |" in schedule_page


def test_schedule_reference_lists_models_datasets_and_policy_args(schedule_page):
    from distiller.apps.optimizers import OPTIMIZERS
    from distiller.data import DATASETS
    from distiller.models.zoo import MODELS
    from distiller.scheduler.pruning_policy import _PRUNING_ARGS

    for registry in (OPTIMIZERS, DATASETS, MODELS):
        for name in registry.names():
            assert f"| `{name}` |" in schedule_page, name
    for key in _PRUNING_ARGS:
        assert f"| `{key}` |" in schedule_page, key


def _walk(parser: argparse.ArgumentParser, prog: str):
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{prog} {name}")


def test_cli_reference_lists_every_option_of_every_subcommand(cli_page):
    from distiller.cli.main import build_parser

    programs = list(_walk(build_parser(), "distiller"))
    assert any(prog == "distiller classify" for prog, _ in programs)
    for prog, parser in programs:
        assert f"`{prog}`" in cli_page, prog
        section = cli_page.split(f"`{prog}`", 1)[1]
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for option in action.option_strings:
                assert f"`{option}`" in section, f"{prog}: {option} missing from the CLI reference"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (the `docs` extra)")
def test_mkdocs_build_strict(tmp_path, schedule_page, cli_page):
    # Build from a copy of the docs, so the test never writes into the working tree.
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", work / "docs", ignore=shutil.ignore_patterns("reference"))
    shutil.copy(ROOT / "mkdocs.yml", work / "mkdocs.yml")
    (work / "docs" / "reference").mkdir()
    (work / "docs" / "reference" / "schedule.md").write_text(schedule_page, encoding="utf-8")
    (work / "docs" / "reference" / "cli.md").write_text(cli_page, encoding="utf-8")
    # The hook turns links to repository files into text only when the file exists, so mirror them.
    for top in ("notebooks", "examples", "benchmarks", "README.md"):
        src = ROOT / top
        if src.is_dir():
            (work / top).symlink_to(src, target_is_directory=True)
        elif src.exists():
            (work / top).symlink_to(src)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "schedule" / "index.html").exists()
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()
