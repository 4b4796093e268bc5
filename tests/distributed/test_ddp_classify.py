"""``distiller classify`` under ``torchrun`` with 2 CPU processes (gloo) on the embedded digits data.

Every rank writes digests of its masks, weights and buffers at each epoch end
(``DISTILLER_DDP_AUDIT``); the tests compare them across ranks bit for bit, and check what rank 0
printed and saved against single-process runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shared_data import REPO_ROOT, CliRun

HERE = Path(__file__).resolve().parent
DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-b", "64", "--lr", "0.1", "-j", "0", "--no-progress")
JOB_TIMEOUT = 240  # seconds; a hang fails the test instead of blocking the suite


def torchrun(
    *args: str,
    tmp_path: Path,
    nproc: int = 2,
    program: tuple[str, ...] = ("-m", "distiller", "classify"),
    env: dict | None = None,
    timeout: float = JOB_TIMEOUT,
) -> tuple[CliRun, Path]:
    """Run ``PROGRAM ARGS`` (``distiller classify ARGS`` by default) under torchrun; (run, audit dir)."""
    audit = tmp_path / f"audit{len(list(tmp_path.glob('audit*')))}"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    timeout_flag = [] if "--ddp-timeout" in args else ["--ddp-timeout", "60"]
    command = [*launcher, *program, *map(str, args), "-o", str(tmp_path / "logs"), *timeout_flag]
    environ = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    environ.update({"DISTILLER_DDP_AUDIT": str(audit), "OMP_NUM_THREADS": "1", **(env or {})})
    done = subprocess.run(command, cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=timeout)
    return CliRun(done.returncode, done.stdout, done.stderr), audit


def audit_lines(audit: Path, nproc: int = 2) -> list[list[dict]]:
    """Per rank, the digests of each epoch end (rank field removed so ranks compare equal)."""
    ranks = []
    for r in range(nproc):
        lines = [json.loads(line) for line in (audit / f"rank{r}.jsonl").read_text().splitlines()]
        for line in lines:
            assert line.pop("rank") == r
        ranks.append(lines)
    return ranks


def assert_ranks_agree(audit: Path, epochs: int) -> list[dict]:
    rank0, rank1 = audit_lines(audit)
    assert [line["epoch"] for line in rank0] == list(range(epochs))
    for a, b in zip(rank0, rank1):
        assert a["masks"] == b["masks"], f"masks differ at epoch {a['epoch']}"
        assert a["params"] == b["params"], f"weights differ at epoch {a['epoch']}"
        assert a["buffers"] == b["buffers"], f"buffers differ at epoch {a['epoch']}"
    return rank0


def checkpoint(run: CliRun) -> dict:
    return torch.load(run.log_dir() / "checkpoint.pth.tar", weights_only=True)


def test_agp_and_structured_pruning_agree_on_every_rank(tmp_path, run_cli):
    run, audit = torchrun(
        *DIGITS,
        "--epochs",
        "3",
        "--deterministic",
        "--compress",
        HERE / "digits_agp_structured.yaml",
        tmp_path=tmp_path,
    )
    assert run.code == 0, run.err[-3000:]
    assert "DDP: 2 processes (gloo), global batch 64 = 2 x 32 per process" in run.out
    assert run.out.count("Log dir:") == 1 and run.out.count("==> Top1:") == 1  # rank 0 alone prints
    lines = assert_ranks_agree(audit, epochs=3)
    assert lines[-1]["masks"]["conv2.weight"] is not None and lines[-1]["masks"]["conv1.weight"] is not None
    ckpt = checkpoint(run)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    assert not any(k.startswith("module.") for k in ckpt["compression_sched"]["masks_dict"])
    conv2 = ckpt["state_dict"]["conv2.weight"]
    assert abs((conv2 == 0).float().mean().item() - 0.50) < 0.01
    assert (ckpt["state_dict"]["conv1.weight"].flatten(1).abs().sum(1) == 0).sum().item() == int(0.40 * 16)
    # one process evaluates the checkpoint to exactly what rank 0 printed
    single = run_cli("classify", *DIGITS, "--evaluate", "--resume-from", run.log_dir() / "checkpoint.pth.tar")
    assert single.code == 0, single.err
    assert single.result() == run.result()
    # and the run's own files exist once, in rank 0's log dir
    assert (run.log_dir() / "best.pth.tar").exists() and (run.log_dir() / "training_progress.csv").exists()
    assert len(list((tmp_path / "logs").glob("*/checkpoint.pth.tar"))) == 1


def test_random_filter_pruner_masks_agree(tmp_path):
    run, audit = torchrun(
        *DIGITS, "--epochs", "2", "--etrs", "0.5", "--compress", HERE / "digits_random_filters.yaml", tmp_path=tmp_path
    )
    assert run.code == 0, run.err[-3000:]
    lines = assert_ranks_agree(audit, epochs=2)
    assert all(lines[-1]["masks"][name] for name in ("conv1.weight", "conv2.weight", "fc.weight"))
    conv1 = checkpoint(run)["state_dict"]["conv1.weight"]
    assert (conv1.flatten(1).abs().sum(1) == 0).sum().item() == 4  # 25% of 16 filters, drawn on rank 0


def test_thinning_mid_schedule_rebuilds_ddp_and_continues(tmp_path, run_cli):
    run, audit = torchrun(
        *DIGITS,
        "--epochs",
        "3",
        "--etrs",
        "0.5",
        "--deterministic",
        "--compress",
        HERE / "digits_thinning.yaml",
        tmp_path=tmp_path,
    )
    assert run.code == 0, run.err[-3000:]
    assert "removed" in run.out and "rebuilding DistributedDataParallel" in run.out
    assert_ranks_agree(audit, epochs=3)
    state = checkpoint(run)["state_dict"]
    assert state["conv1.weight"].shape[0] == 12 and state["conv2.weight"].shape[1] == 12  # thinned
    assert run.result()[0] > 50.0  # it kept training after the thinning
    single = run_cli("classify", *DIGITS, "--evaluate", "--resume-from", run.log_dir() / "checkpoint.pth.tar")
    assert single.code == 0, single.err
    assert single.result() == run.result()


def test_qat_preparation_mid_run_rebuilds_ddp_through_compress_classifier(tmp_path, run_cli):
    """PACT from epoch 1: the quantizer adds parameters when it fires, and every rank rewraps.
    Launched as the original's script, ``torchrun ... compress_classifier.py``."""
    script = REPO_ROOT / "examples" / "classifier_compression" / "compress_classifier.py"
    run, audit = torchrun(
        *DIGITS,
        "--epochs",
        "2",
        "--etrs",
        "0.5",
        "--deterministic",
        "--compress",
        REPO_ROOT / "tests" / "data_files" / "digits_pact_from_epoch1.yaml",
        tmp_path=tmp_path,
        program=(str(script),),
    )
    assert run.code == 0, run.err[-3000:]
    assert_ranks_agree(audit, epochs=2)
    log_file = next(run.log_dir().glob("*.log")).read_text()
    assert "rebuilding DistributedDataParallel" in log_file
    single = run_cli("classify", *DIGITS, "--evaluate", "--resume-from", run.log_dir() / "checkpoint.pth.tar")
    assert single.code == 0, single.err
    assert single.result() == run.result()


def _sparsity(state: dict) -> float:
    weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() > 1]
    return sum((w == 0).sum().item() for w in weights) / sum(w.numel() for w in weights)


RESUME = (*DIGITS, "--etrs", "0.5", "--seed", "5", "--deterministic")


def test_resume_of_a_2_process_run_in_1_process(tmp_path, run_cli):
    """-b is the global batch, so one process continues a 2-process run with the same hyperparameters
    and ends where an uninterrupted run ends (sparsity exactly, accuracy within noise: BatchNorm saw
    per-process batches for one epoch)."""
    schedule = HERE / "digits_agp_structured.yaml"
    part, _ = torchrun(*RESUME, "--epochs", "1", "--compress", schedule, tmp_path=tmp_path / "part")
    assert part.code == 0, part.err[-2000:]
    resumed = run_cli(
        "classify",
        *DIGITS,
        "--etrs",
        "0.5",
        "--epochs",
        "3",
        "--resume-from",
        part.log_dir() / "checkpoint.pth.tar",
        out_dir=tmp_path / "resumed",
    )
    assert resumed.code == 0, resumed.err
    assert "Continuing the compression schedule" in resumed.out
    full = run_cli("classify", *RESUME, "--epochs", "3", "--compress", schedule, out_dir=tmp_path / "full")
    assert full.code == 0, full.err
    expected, actual = checkpoint(full), checkpoint(resumed)
    assert actual["epoch"] == expected["epoch"] == 2
    assert abs(_sparsity(actual["state_dict"]) - _sparsity(expected["state_dict"])) < 1e-6
    assert abs(resumed.result()[0] - full.result()[0]) < 5.0


@pytest.mark.slow
def test_resume_in_2_processes_is_bit_equal_to_the_uninterrupted_run(tmp_path):
    schedule = HERE / "digits_agp_structured.yaml"
    full, _ = torchrun(*RESUME, "--epochs", "3", "--compress", schedule, tmp_path=tmp_path / "full")
    part, _ = torchrun(*RESUME, "--epochs", "1", "--compress", schedule, tmp_path=tmp_path / "part")
    assert full.code == 0 and part.code == 0, (full.err[-2000:], part.err[-2000:])
    resumed, audit = torchrun(
        *DIGITS,
        "--etrs",
        "0.5",
        "--epochs",
        "3",
        "--resume-from",
        part.log_dir() / "checkpoint.pth.tar",
        tmp_path=tmp_path / "resumed",
    )
    assert resumed.code == 0, resumed.err[-2000:]
    rank0, rank1 = audit_lines(audit)
    assert [line["epoch"] for line in rank0] == [1, 2] and rank0 == rank1
    expected, actual = checkpoint(full), checkpoint(resumed)
    for key, value in expected["state_dict"].items():
        assert torch.equal(value, actual["state_dict"][key]), key
    assert resumed.result() == full.result()


def test_a_failing_rank_ends_the_job_with_its_message(tmp_path):
    start = time.monotonic()
    run, _ = torchrun(
        *DIGITS,
        "--epochs",
        "3",
        "--etrs",
        "0.5",
        tmp_path=tmp_path,
        program=(str(HERE / "faulty_classify.py"), "classify"),
        env={"DISTILLER_TEST_FAIL_RANK": "1", "DISTILLER_TEST_FAIL_EPOCH": "1"},
        timeout=180,
    )
    elapsed = time.monotonic() - start
    assert run.code != 0
    assert "[rank 1/2] ERROR: Rank 1/2 failed: RuntimeError: injected failure on purpose" in run.err
    assert elapsed < 120, f"the job took {elapsed:.0f}s to end"
    assert "==> Top1:" not in run.out


def test_a_stalled_rank_is_detected_by_the_collective_timeout(tmp_path):
    start = time.monotonic()
    run, _ = torchrun(
        *DIGITS,
        "--epochs",
        "3",
        "--etrs",
        "0.5",
        "--ddp-timeout",
        "10",
        tmp_path=tmp_path,
        program=(str(HERE / "faulty_classify.py"), "classify"),
        timeout=180,
        env={"DISTILLER_TEST_FAIL_RANK": "1", "DISTILLER_TEST_FAIL_EPOCH": "1", "DISTILLER_TEST_FAIL_MODE": "stall"},
    )
    elapsed = time.monotonic() - start
    assert run.code != 0
    assert "Rank 0/2 stopped: it lost contact with the other ranks" in run.out + run.err
    assert elapsed < 120, f"the job took {elapsed:.0f}s to end"
