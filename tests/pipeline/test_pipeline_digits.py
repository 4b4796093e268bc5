"""`distiller pipeline` on the embedded digits, with tiny epochs: stages, files, table and consistency.

Latencies are printed but never asserted (they depend on the machine and its load).
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
import torch

from shared_data import RESULT_LINE, CliRun

TINY = (
    *("--epochs", "2", "--prune-epochs", "4", "--finetune-epochs", "1", "--qat-epochs", "1"),
    *("--calibration-size", "256", "--batch-size", "32", "--latency-rounds", "1", "--latency-repeats", "2"),
)
ROWS = ("dense", "pruned+thinned", "int8")


def _table_rows(out: str) -> dict[str, list[str]]:
    """The pipeline table's rows by model name (markdown cells, stripped)."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in ROWS:
            rows[cells[0]] = cells
    return rows


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> tuple[CliRun, dict]:
    from distiller.cli.main import main

    out_dir = tmp_path_factory.mktemp("pipeline")
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(["pipeline", *TINY, "-o", str(out_dir)])
    run = CliRun(code, out.getvalue(), err.getvalue())
    assert run.code == 0, run.out + run.err
    return run, json.loads((run.log_dir() / "pipeline.json").read_text())


def test_output_starts_with_the_log_dir_and_announces_every_file(digits_run):
    run, report = digits_run
    assert run.out.splitlines()[0].startswith("Log dir: ")
    log_dir = run.log_dir()
    for name in ("dense.pth.tar", "thinned.pth.tar", "int8.pth.tar", "dense.onnx", "thinned.onnx", "int8.onnx",
                 "pipeline.json"):  # fmt: skip
        path = run.saved(name)
        assert path.parent == log_dir and path.is_file()
    assert [r["name"] for r in report["rows"]] == list(ROWS)
    assert "[dense] done in" in run.err and "prune epoch 4/4" in run.err  # progress goes to stderr
    assert "[dense]" not in run.out


def test_table_has_the_three_rows_and_the_sparsity_summary(digits_run):
    run, report = digits_run
    rows = _table_rows(run.out)
    assert list(rows) == list(ROWS)
    assert rows["int8"][5:7] == ["-", "-"] and rows["dense"][7] == "-"  # int8: ORT int8 latency only
    assert all(float(c) > 0 for c in rows["pruned+thinned"][5:7])  # thinned: PyTorch and ORT FP32
    assert "int8 vs FP32 of the same thinned model in ONNX Runtime" in run.out
    match = re.search(r"^Total sparsity: ([\d.]+)$", run.out, re.MULTILINE)
    assert match and float(match.group(1)) == pytest.approx(report["total_sparsity"], abs=0.01)
    assert 30 < report["total_sparsity"] < 60  # conv1 25%, conv2/conv3 50% of their filters


def test_thinning_shrinks_the_model_and_keeps_its_function(digits_run):
    _, report = digits_run
    dense, thinned, int8 = report["rows"]
    assert thinned["params"] < dense["params"] and thinned["macs"] < dense["macs"]
    assert (int8["params"], int8["macs"]) == (thinned["params"], thinned["macs"])
    thinning = report["thinning"]
    assert thinning["removed_channels"] == 12 + 48 + 96  # 25% of conv1's 48 filters, 50% of conv2's and conv3's
    # Exact except where a removed filter's constant is folded into a zero-padded convolution (borders).
    assert thinning["agreement"] >= 0.97
    assert abs(thinning["thinned_top1"] - thinning["masked_top1"]) <= 1.0


def test_onnx_files_match_pytorch_and_int8_is_smaller(digits_run):
    _, report = digits_run
    dense, thinned, int8 = report["rows"]
    for row in (dense, thinned):
        assert row["top1"]["ort_fp32"] == pytest.approx(row["top1"]["torch_fp32"], abs=0.3)
    assert int8["onnx_bytes"] < 0.5 * thinned["onnx_bytes"] < dense["onnx_bytes"]
    assert int8["top1"]["ort_int8"] == pytest.approx(int8["top1"]["torch_int8_sim"], abs=1.0)
    assert int8["top1"]["ort_int8"] == pytest.approx(thinned["top1"]["torch_fp32"], abs=3.0)
    assert report["test_images"] == 360


def test_result_line_is_the_deployed_int8_model(digits_run):
    run, report = digits_run
    top1, _, _ = run.result()
    assert RESULT_LINE.search(run.out.rstrip().splitlines()[-1])
    assert top1 == pytest.approx(report["rows"][2]["top1"]["ort_int8"], abs=1e-3)


def test_thinned_checkpoint_rebuilds_the_thinned_model(digits_run):
    from distiller.checkpoint import load_checkpoint
    from distiller.models import create_model

    run, report = digits_run
    model = create_model("convnet_digits", "digits")
    load_checkpoint(run.saved("thinned.pth.tar"), model)
    assert sum(p.numel() for p in model.parameters()) == report["rows"][1]["params"]
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_int8_checkpoint_resumes_as_the_quantized_thinned_model(digits_run, tmp_path):
    """`--resume-from int8.pth.tar`: the float model is thinned first, then its quantizer is rebuilt."""
    from distiller.cli.main import main

    run, report = digits_run
    argv = ["classify", "-a", "convnet_digits", "--dataset", "digits", "-j", "0", "--evaluate"]
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([*argv, "--resume-from", str(run.saved("int8.pth.tar")), "-o", str(tmp_path)])
    again = CliRun(code, out.getvalue(), err.getvalue())
    assert again.code == 0, again.out + again.err
    assert again.result()[0] == pytest.approx(report["rows"][2]["top1"]["torch_int8_sim"], abs=1e-3)
