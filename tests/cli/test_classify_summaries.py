"""``distiller classify --summary ...`` and ``--export-onnx``: no dataset needed, exact totals, files in the log dir."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _saved(run) -> list[str]:
    return re.findall(r"^Saved: (.+)$", run.out, re.MULTILINE)


def test_compute_summary_needs_no_dataset_and_ends_with_the_total(run_cli):
    run = run_cli("classify", "--arch", "resnet20_cifar", "--summary", "compute")
    assert run.code == 0, run.err
    assert run.out.strip().splitlines()[-1] == "Total MACs: 40,813,184"
    csv_path = run.log_dir() / "compute.csv"
    assert _saved(run) == [str(csv_path)]
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 22 and rows[0]["Name"] == "conv1" and rows[0]["IFM"] == "(1, 3, 32, 32)"
    assert sum(int(r["MACs"]) for r in rows) == 40_813_184


def test_modules_and_model_summaries(run_cli):
    run = run_cli("classify", "-a", "simplenet_cifar", "--summary", "modules", "--summary", "model")
    assert run.code == 0, run.err
    assert "Total parameters: 62,006" in run.out
    assert "| relu_conv1 " in run.out
    assert run.out.rstrip().endswith(")") and "(fc3): Linear(in_features=84, out_features=10, bias=True)" in run.out
    assert _saved(run) == []


def test_several_summaries_keep_the_order_asked(run_cli):
    run = run_cli("classify", "-a", "simplenet_cifar", "--summary", "compute", "--summary", "sparsity")
    assert run.code == 0, run.err
    assert run.out.index("Total MACs: 651,720") < run.out.index("Total sparsity: 0.00")
    assert [p.rsplit("/", 1)[-1] for p in _saved(run)] == ["compute.csv", "sparsity.csv"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_png_summaries_write_under_the_log_dir(run_cli):
    run = run_cli("classify", "-a", "simplenet_cifar", "--summary", "png", "--summary", "png_w_params")
    assert run.code == 0, run.err
    log_dir = run.log_dir()
    assert _saved(run) == [str(log_dir / "simplenet_cifar.png"), str(log_dir / "simplenet_cifar_w_params.png")]
    assert all(Path(path).read_bytes().startswith(PNG_MAGIC) for path in _saved(run))


def test_png_without_graphviz_is_a_one_line_error(run_cli, monkeypatch):
    from distiller.summary import png

    monkeypatch.setattr(png.shutil, "which", lambda name: None)
    run = run_cli("classify", "-a", "simplenet_cifar", "--summary", "png")
    assert run.code == 2 and "Traceback" not in run.err
    assert run.err.startswith("distiller: error: ") and len(run.err.strip().splitlines()) == 1
    assert "apt install graphviz" in run.err


def test_export_onnx_default_relative_and_absolute_paths(run_cli, tmp_path):
    pytest.importorskip("onnx")
    run = run_cli("classify", "-a", "simplenet_cifar", "--export-onnx")
    assert run.code == 0, run.err
    default = run.log_dir() / "simplenet_cifar.onnx"
    assert _saved(run) == [str(default)] and default.stat().st_size > 0
    assert not list(run.log_dir().glob("*.pth.tar"))  # export alone does not train

    run = run_cli("classify", "-a", "simplenet_cifar", "--export-onnx", "sub/model.onnx")
    assert run.code == 0, run.err
    assert _saved(run) == [str(run.log_dir() / "sub" / "model.onnx")]

    absolute = tmp_path / "elsewhere" / "m.onnx"
    run = run_cli("classify", "-a", "simplenet_cifar", "--export-onnx", absolute)
    assert run.code == 0, run.err
    assert _saved(run) == [str(absolute)] and absolute.exists()


def test_export_onnx_after_summary_and_after_evaluate(run_cli):
    pytest.importorskip("onnx")
    run = run_cli("classify", "-a", "simplenet_cifar", "--summary", "compute", "--export-onnx")
    assert run.code == 0, run.err
    assert [p.rsplit("/", 1)[-1] for p in _saved(run)] == ["compute.csv", "simplenet_cifar.onnx"]
    assert run.out.strip().splitlines()[-1] == "Total MACs: 651,720"

    run = run_cli("classify", "-a", "simplenet_digits", "--evaluate", "--export-onnx", "-j", "0")
    assert run.code == 0, run.err
    run.result()  # the last Top1 line is still the result line
    assert _saved(run) == [str(run.log_dir() / "simplenet_digits.onnx")]


def test_export_onnx_to_an_unwritable_path_is_a_one_line_error(run_cli, tmp_path):
    pytest.importorskip("onnx")
    blocker = tmp_path / "a_file"
    blocker.write_text("keep")
    run = run_cli("classify", "-a", "simplenet_cifar", "--export-onnx", blocker / "m.onnx")
    assert run.code == 2 and "Traceback" not in run.err
    assert run.err.startswith("distiller: error: ") and len(run.err.strip().splitlines()) == 1
    assert str(blocker) in run.err and "not a folder" in run.err
    assert blocker.read_text() == "keep"


def test_unknown_summary_is_rejected_by_the_parser(run_cli):
    with pytest.raises(SystemExit) as exc:
        run_cli("classify", "-a", "simplenet_cifar", "--summary", "flops")
    assert exc.value.code == 2


def test_every_summary_choice_has_a_report():
    from distiller.apps.reports import SUMMARIES
    from distiller.cli.classify_parser import SUMMARY_CHOICES

    assert list(SUMMARIES) == SUMMARY_CHOICES
