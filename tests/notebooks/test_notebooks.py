"""Every notebook in notebooks/ runs top to bottom in a fresh kernel, and computes what it says.

Each notebook ends with a cell tagged ``results`` whose output is a dict literal of the numbers
it computed; the checks below read it, so a notebook that runs but shows the wrong thing fails too.
The kernel is started from this interpreter (jupyter_client replaces a kernelspec's ``python`` with
``sys.executable``), so the notebooks test the installed package, not some other Python on PATH.
"""

from __future__ import annotations

import ast
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
TIMEOUT_S = 300  # per cell; a whole notebook takes well under a minute
# One intra-op thread, as the other CPU-heavy tests use: the models are tiny, and when tests run
# side by side, OpenMP threads competing for the cores make a notebook ten times slower.
KERNEL_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def execute(nb, workdir: Path):
    """Run ``nb`` in place in a fresh ``python3`` kernel whose working directory is ``workdir``."""
    client = nbclient.NotebookClient(
        nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute(env=KERNEL_ENV)
    return nb


def results_of(nb) -> dict:
    """The dict printed by the cell tagged ``results``."""
    for cell in nb.cells:
        if "results" in cell.get("metadata", {}).get("tags", []):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "execute_result":
                    return ast.literal_eval(output["data"]["text/plain"])
    raise AssertionError("the notebook has no cell tagged 'results' with a value")


def check_model_summary(r: dict) -> None:
    assert r["macs_before"] == 9_216 + 294_912 + 5_120  # masking alone changes no shape
    assert r["macs_after"] == 9_216 + 147_456 + 2_560  # half of conv2's filters and fc's inputs removed
    assert r["thinned_top1"] == r["pruned_top1"]  # thinning computes the same function
    assert r["finetuned_top1"] > 90.0
    assert r["total_sparsity"] == pytest.approx(100 * (2_304 + 4_096) / 9_872, abs=0.01)


def check_agp_schedule(r: dict) -> None:
    assert r["pruning_steps"] == 8  # conv2 at 0, 2, 4, 6 and fc at 1, 3, 5, 7
    assert r["max_abs_error"] < 1 / 4_608  # the masks hit the AGP targets to within one weight
    assert r["final_conv2"] == pytest.approx(0.70, abs=1e-3)
    assert r["final_fc"] == pytest.approx(0.85, abs=1e-3)


def check_compare_runs(r: dict) -> None:
    assert r["valid_epochs"] == 4
    assert r["dense_sparsity"] == 0.0
    assert r["agp_sparsity"] == pytest.approx(100 * 0.8 * (4_608 + 5_120) / 9_872, abs=0.05)
    assert r["dense_test_top1"] > 85.0 and r["agp_test_top1"] > 85.0


def check_sensitivity_analysis(r: dict) -> None:
    assert set(r["targets"]) == {"conv1.weight", "conv2.weight", "fc.weight"}
    assert all(0.0 <= t < 1.0 for t in r["targets"].values())
    assert r["csv_rows"] == r["analysed_params"] * r["levels"]
    assert r["dense_top1"] > 85.0 and r["finetuned_top1"] > 85.0
    assert r["pruned_sparsity"] > 30.0


CHECKS: dict[str, Callable[[dict], None]] = {
    "model_summary": check_model_summary,
    "agp_schedule": check_agp_schedule,
    "compare_runs": check_compare_runs,
    "sensitivity_analysis": check_sensitivity_analysis,
}


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_is_checked() -> None:
    names = {p.stem for p in notebook_paths()}
    assert names, f"no notebooks in {NOTEBOOKS}"
    assert names == set(CHECKS), "add a check for each new notebook (and remove those of deleted ones)"


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown", "start with a markdown cell saying what the notebook shows"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the outputs before committing"


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs_and_computes_what_it_shows(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    execute(nb, tmp_path)
    seconds = time.perf_counter() - start
    CHECKS[path.stem](results_of(nb))
    assert list(tmp_path.iterdir()) == [], "notebooks write to a temporary folder, not the working directory"
    print(f"{path.name}: {seconds:.1f} s")


def test_kernel_runs_this_python(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys\nsys.executable")])
    execute(nb, tmp_path)
    assert Path(ast.literal_eval(nb.cells[0].outputs[0]["data"]["text/plain"])) == Path(sys.executable)
