"""`distiller classify --act-hist`: activation histograms on a fixed training subset of digits."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from distiller.quantization import histograms as quant_histograms

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-b", "64", "-j", "0", "--seed", "1")


def _per_sample(shape: str) -> int:
    """Elements per sample of a ``(batch, ...)`` shape string."""
    dims = [int(d) for d in shape.strip("()").split(",") if d.strip()]
    return math.prod(dims[1:])


def _quick_draw(name, record, folder):
    """Stands in for the PNG drawing (matplotlib takes most of a second per module)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    path.write_bytes(b"")
    return path


def test_act_hist_writes_int64_histograms_of_the_requested_samples(run_cli, monkeypatch) -> None:
    monkeypatch.setattr(quant_histograms, "_draw", _quick_draw)
    run = run_cli("classify", *DIGITS, "--act-hist", "200")
    assert run.code == 0, run.err
    log_dir = run.log_dir()
    path = run.saved("acts_histograms.pt")
    assert path == log_dir / "acts_histograms.pt"
    stats = yaml.safe_load(run.saved("acts_quantization_stats.yaml").read_text())
    histograms = torch.load(path, weights_only=True)
    assert set(histograms) == {"conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "pool", "fc"}
    for name, record in histograms.items():
        slots = [*record.get("inputs", {}).values(), record["output"]]
        assert len(record["inputs"]) == 1
        for hist in slots:
            assert hist["hist"].dtype == torch.int64 and hist["hist"].numel() == 2048
            assert hist["bin_edges"].shape == (2049,)
            assert int(hist["hist"].sum()) == hist["total_numel"]
        out_stats = stats[name]["output"]
        assert record["output"]["total_numel"] == out_stats["total_numel"] == 200 * _per_sample(out_stats["shape"])
    images = sorted(p.name for p in (log_dir / "histogram_images").glob("*.png"))
    assert images == sorted(f"{name}.png" for name in histograms)
    assert f"Saved: {log_dir / 'histogram_images' / 'fc.png'}" in run.out
    assert "Top1" not in run.out  # a mode of its own: no training, no evaluation


def test_act_hist_fraction_and_refused_combination(run_cli, monkeypatch) -> None:
    monkeypatch.setattr(quant_histograms, "matplotlib_available", lambda: False)  # drawing is the slow part
    with pytest.warns(UserWarning, match="matplotlib"):
        run = run_cli("classify", *DIGITS, "--act-hist", "0.05")
    assert run.code == 0, run.err
    assert not (run.log_dir() / "histogram_images").exists()
    histograms = torch.load(run.saved("acts_histograms.pt"), weights_only=True)
    samples = histograms["fc"]["output"]["total_numel"] // 10
    assert 60 <= samples <= 70  # 5% of the training split (digits: ~1.3K samples after test and validation)
    refused = run_cli("classify", *DIGITS, "--act-hist", "200", "--evaluate")
    assert refused.code == 2 and "--act-hist" in refused.err and "--evaluate" in refused.err
