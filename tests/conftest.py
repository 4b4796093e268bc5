"""Shared test fixtures: run the CLI in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_data import CliRun


@pytest.fixture
def run_cli(capsys, tmp_path):
    """Run ``distiller ...`` in-process; ``-o`` defaults to a temporary folder."""
    from distiller.cli.main import main

    def run(*args: str, out_dir: Path | None = None) -> CliRun:
        argv = [str(a) for a in args]
        if argv and argv[0] == "classify" and "-o" not in argv and "--out-dir" not in argv:
            argv += ["-o", str(out_dir or tmp_path / "logs")]
        capsys.readouterr()
        code = main(argv)
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    return run
