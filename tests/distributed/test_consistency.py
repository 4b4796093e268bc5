"""Cross-rank consistency of the distributed helpers, in a real 2-process gloo job.

One job (two spawned processes, ``MASTER_ADDR=127.0.0.1`` and a free port) runs every scenario of
:mod:`ddp_scenarios`; each test checks one scenario's results from both ranks.
"""

from __future__ import annotations

import math
import socket

import ddp_scenarios
import pytest
import torch
import torch.multiprocessing as mp

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """``{scenario: [rank 0 result, rank 1 result]}`` of one 2-process run."""
    out = tmp_path_factory.mktemp("ddp_scenarios")
    mp.spawn(ddp_scenarios.worker, args=(WORLD, free_port(), str(out)), nprocs=WORLD, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return {name: [ranks[r][name] for r in range(WORLD)] for name in ddp_scenarios.SCENARIOS}


def results(job, name):
    outcomes = job[name]
    for status, value in outcomes:
        assert status == "ok", value
    return [value for _, value in outcomes]


def assert_equal_tensors(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_random_pruners_draw_on_rank_0(job):
    r0, r1 = results(job, "random_pruners")
    for kind in ("random_ranked", "bernoulli", "random_level"):
        assert r0[kind], kind
        assert_equal_tensors(r0[kind], r1[kind])
    assert (r0["random_ranked"]["0.weight"].flatten(1).sum(1) == 0).sum() == 16  # half of 32 filters
    assert torch.equal(r0["noise"], r1["noise"])
    # the control, drawn rank-locally, differs: the equality above is rank 0's draws, not luck
    assert not torch.equal(r0["local_control"]["0.weight"], r1["local_control"]["0.weight"])


def test_changed_masks_and_their_weights_come_from_rank_0(job):
    r0, r1 = results(job, "mask_repair")
    assert torch.equal(r0["mask"], r1["mask"]) and torch.equal(r0["weight"], r1["weight"])
    assert (r1["mask"].flatten(1).sum(1) == 0).nonzero().flatten().tolist() == [0, 4]  # rank 0's filters
    assert r0["broadcasts"] == r1["broadcasts"] == 1


def test_activation_statistics_are_all_reduced(job):
    for result in results(job, "activation_stats"):
        assert result["reduced"].keys() == result["single"].keys()
        for name, value in result["reduced"].items():
            assert torch.allclose(value, result["single"][name], atol=1e-6), name


def test_calibration_statistics_are_merged_across_ranks(job):
    r0, r1 = results(job, "calibration")
    assert r0["merged"] == r1["merged"]  # bit-identical on every rank
    for module, record in r0["merged"].items():
        single = r0["single"][module]
        for slot in ("inputs", "output"):
            if slot not in record:
                continue
            merged_entries = record[slot] if slot == "inputs" else {0: record[slot]}
            single_entries = single[slot] if slot == "inputs" else {0: single[slot]}
            for index, entry in merged_entries.items():
                reference = single_entries[index]
                assert entry["total_numel"] == reference["total_numel"]
                for key in ("min", "max", "avg_min", "avg_max", "mean", "std", "b"):
                    assert math.isclose(entry[key], reference[key], rel_tol=1e-9, abs_tol=1e-12), (module, key)


def test_shared_work_is_gathered_in_order_and_failures_reach_every_rank(job):
    r0, r1 = results(job, "sharing")
    assert r0["results"] == r1["results"] == [(x * x, x % WORLD) for x in range(7)]
    for r in (r0, r1):
        assert r["error"] is not None and "rank 1" in r["error"] and "item 3 is broken" in r["error"]


def test_ddp_is_rebuilt_after_a_parameter_shrinks(job):
    r0, r1 = results(job, "rewrap")
    assert r0["rewraps"] == r1["rewraps"] == 1 and r0["shape"] == (6, 4)
    assert r0["params"] == r1["params"]


def test_sensitivity_analysis_shared_among_ranks_equals_one_process(job):
    for result in results(job, "sensitivity"):
        assert result["shared"] == result["single"]
