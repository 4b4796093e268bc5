"""The runnable example of docs/analysis/loggers.md keeps running and writes what the page says."""

from __future__ import annotations

import logging
import re
import runpy

from shared_data import REPO_ROOT


def test_own_loop_example_runs(tmp_path, monkeypatch, caplog):
    page = (REPO_ROOT / "docs" / "analysis" / "loggers.md").read_text()
    example = re.findall(r"```python\n(.*?)```", page, re.DOTALL)[-1]
    script = tmp_path / "example.py"
    script.write_text(example)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)  # the test's logging stays as it is
    caplog.set_level(logging.INFO, logger="toy")
    runpy.run_path(str(script), run_name="__main__")
    assert any(r.getMessage().startswith("Epoch: [2][14/14]") for r in caplog.records)
    run = tmp_path / "runs" / "toy"
    header = (run / "training_progress.csv").read_text().splitlines()[0]
    assert header == "phase,epoch,completed,total,step,metric,value"
    assert (run / "activation_statistics.csv").read_text().count("\nvalid,") == 3
