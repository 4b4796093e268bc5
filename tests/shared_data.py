"""Paths of the real data shared with the development workplace, and helpers to use it in tests.

Imported as ``from shared_data import ...`` (a unique module name: the test folders have several
``conftest.py`` files, so ``from conftest import`` would be ambiguous).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
SHARED_REFERENCE = (REPO_ROOT / ".." / "shared" / "reference").resolve()
CHECKPOINTS = SHARED_DATA / "distiller-checkpoints"
CIFAR10_DIR = SHARED_DATA / "cifar10"
MNIST_DIR = SHARED_DATA / "mnist"
ORIGINAL_SAMPLES = SHARED_REFERENCE / "original-samples"

RESULT_LINE = re.compile(r"==> Top1: ([\d.]+)\s+Top5: ([\d.]+)\s+Loss: ([\d.]+)")


def require(path: Path) -> Path:
    """Skip the test (with the reason) when a real-data folder is absent, as on a user's fresh clone."""
    if not path.exists():
        pytest.skip(f"real data not available: {path} (it ships only in the development workplace)")
    return path


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    def result(self) -> tuple[float, float, float]:
        """(top1, top5, loss) from the last line containing Top1 (DESIGN §7)."""
        lines = [line for line in self.out.splitlines() if "Top1" in line]
        assert lines, f"no result line in output:\n{self.out}\n{self.err}"
        match = RESULT_LINE.search(lines[-1])
        assert match, f"last Top1 line is not the result line: {lines[-1]!r}"
        return tuple(float(g) for g in match.groups())

    def saved(self, name: str) -> Path:
        """The path of a ``Saved: PATH`` line whose file is called ``name``."""
        paths = [Path(m) for m in re.findall(r"^Saved: (.+)$", self.out, re.MULTILINE)]
        match = [p for p in paths if p.name == name]
        assert match, f"no 'Saved: .../{name}' in output:\n{self.out}"
        return match[0]

    def log_dir(self) -> Path:
        match = re.search(r"^Log dir: (.+)$", self.out, re.MULTILINE)
        assert match, self.out
        return Path(match.group(1))
