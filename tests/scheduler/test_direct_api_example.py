"""The programmatic-API example runs and meets its sparsities."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scheduling_api" / "direct_api_pruning.py"


def test_direct_api_example_runs():
    spec = importlib.util.spec_from_file_location("direct_api_pruning", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(epochs=2, batches=2)
    assert result["conv1 filters"] == pytest.approx(0.10)
    assert result["conv2 filters"] == pytest.approx(0.20)
    assert result["fc2 weights"] == pytest.approx(0.15, abs=0.002)
