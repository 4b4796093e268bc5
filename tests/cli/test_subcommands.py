"""The one-shot subcommands (``summary``, ``sensitivity``, ``thin``, ``quantize``, ``export``) on digits.

Each runs ``distiller classify`` in its mode, so the checks are the output contract of DESIGN §7.
"""

from __future__ import annotations

import csv

import pytest
import torch

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits")
DATA = ("-j", "0", "-b", "64")


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    """A simplenet_digits trained for one epoch."""
    from distiller.cli.main import main

    out = tmp_path_factory.mktemp("train")
    argv = ["classify", *DIGITS, *DATA, "--epochs", "1", "--lr", "0.1", "--deterministic", "-o", str(out)]
    assert main(argv) == 0
    return next(out.glob("*/checkpoint.pth.tar"))


@pytest.fixture
def out(tmp_path):
    return ("-o", str(tmp_path / "logs"))


def test_summary_of_an_architecture_prints_the_compute_total(run_cli, out):
    run = run_cli("summary", *DIGITS, *out)
    assert run.code == 0, run.err
    total = run.out.strip().splitlines()[-1]
    assert total.startswith("Total MACs: ")
    classify = run_cli("classify", *DIGITS, "--summary", "compute", *out)
    assert classify.out.strip().splitlines()[-1] == total
    assert run.saved("compute.csv").parent == run.log_dir()


def test_summary_of_a_checkpoint(run_cli, out, digits_checkpoint):
    run = run_cli("summary", digits_checkpoint, *DIGITS, "-k", "modules", "--summary", "sparsity", *out)
    assert run.code == 0, run.err
    assert run.out.strip().splitlines()[-1].startswith("Total sparsity: ")
    assert "Total parameters: " in run.out


def test_sensitivity_writes_the_csv(run_cli, out, digits_checkpoint):
    run = run_cli("sensitivity", digits_checkpoint, *DIGITS, *DATA, "--sense", "filter", "--sense-range", "0",
                  "0.5", "0.25", "--evs", "128", *out)
    assert run.code == 0, run.err
    with run.saved("sensitivity.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {float(r["sparsity"]) for r in rows} == {0.0, 0.25}
    assert {"parameter", "top1", "top5", "loss"} <= set(rows[0])


def test_thin_saves_the_thinned_checkpoint_and_evaluates_it(run_cli, out, digits_checkpoint):
    run = run_cli("thin", digits_checkpoint, *DIGITS, *DATA, "-e", "--etes", "256", *out)
    assert run.code == 0, run.err
    path = run.saved("checkpoint_thinned.pth.tar")
    assert path.parent == run.log_dir() and path.is_file()
    top1, _, _ = run.result()
    assert top1 > 50.0


def test_quantize_prints_the_result_and_saves_the_quantized_checkpoint(run_cli, out, digits_checkpoint):
    run = run_cli("quantize", digits_checkpoint, *DIGITS, *DATA, "--qe-calibration", "200", "--qe-per-channel",
                  "--etes", "256", *out)
    assert run.code == 0, run.err
    top1, _, _ = run.result()
    assert top1 > 50.0
    assert run.saved("quantized_checkpoint.pth.tar").is_file()


def test_export_saves_an_onnx_file(run_cli, out, digits_checkpoint):
    run = run_cli("export", digits_checkpoint, *DIGITS, *out)
    assert run.code == 0, run.err
    onnx_file = run.saved("simplenet_digits.onnx")
    assert onnx_file.parent == run.log_dir() and onnx_file.stat().st_size > 0


def test_subcommand_options_are_the_classify_options():
    """The subcommand sets the classify mode; every other option keeps the classify default."""
    from distiller.cli.main import build_parser
    from distiller.cli.oneshot_cmds import SUBCOMMANDS, classify_options

    args = build_parser().parse_args(["thin", "c.pth.tar", *DIGITS, "-e"])
    opts = classify_options(args, SUBCOMMANDS["thin"][3])
    assert opts.thinnify and opts.evaluate and opts.resume_from == "c.pth.tar"
    assert (opts.arch, opts.dataset, opts.epochs, opts.validation_split) == ("simplenet_digits", "digits", 90, 0.1)
    args = build_parser().parse_args(["quantize", "c.pth.tar", *DIGITS, "--qe-mode", "asym_u"])
    opts = classify_options(args, SUBCOMMANDS["quantize"][3])
    assert opts.evaluate and opts.quant.quantize_eval and opts.quant.mode == "asym_u"


def test_a_checkpoint_is_required_where_the_mode_needs_one(capsys):
    from distiller.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["thin", *DIGITS])
    assert exit_info.value.code == 2
    assert "CKPT" in capsys.readouterr().err


def test_version(capsys):
    from distiller.cli.main import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("distiller-nn ")


def test_thinned_checkpoint_is_loadable(run_cli, out, digits_checkpoint):
    run = run_cli("thin", digits_checkpoint, *DIGITS, *out)
    assert run.code == 0, run.err
    ckpt = torch.load(run.saved("checkpoint_thinned.pth.tar"), map_location="cpu", weights_only=False)
    assert "state_dict" in ckpt
