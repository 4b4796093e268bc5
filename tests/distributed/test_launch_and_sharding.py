"""The single-process side of DDP support: launch environment, data sharding, options, no-op helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.apps.ddp import check_ddp_options, ddp_device, process_batch_size
from distiller.apps.options import ClassifierOptions
from distiller.cli.classify_parser import build_classify_parser, options_from_args
from distiller.data import DistributedEpochSampler, EpochSubsetSampler, load_data
from distiller.distributed import (
    LaunchEnv,
    SynchronizedScheduler,
    is_active,
    launch_env,
    my_share,
    same_on_all_ranks,
    shared_map,
    world_size,
)
from distiller.errors import ConfigError, DistributedError
from distiller.scheduler import CompressionScheduler

TORCHRUN = {
    "WORLD_SIZE": "4",
    "RANK": "2",
    "LOCAL_RANK": "0",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}


def test_launch_env_reads_torchrun_variables():
    env = launch_env(TORCHRUN)
    assert env == LaunchEnv(world_size=4, rank=2, local_rank=0, local_world_size=2) and not env.is_main
    assert launch_env({}) is None
    assert launch_env({**TORCHRUN, "WORLD_SIZE": "1", "RANK": "0"}) is None  # one process runs as usual


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"RANK": "4"}, "outside"),
        ({"RANK": "x"}, "not an integer"),
        ({"MASTER_PORT": ""}, "MASTER_PORT is not set"),
        ({"RANK": None}, "RANK is not"),
    ],
)
def test_launch_env_rejects_inconsistent_variables(change, message):
    env = {**TORCHRUN, **change}
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(DistributedError, match=message):
        launch_env(env)


def test_distributed_sampler_partitions_each_epoch_and_reseeds():
    base = EpochSubsetSampler(torch.arange(100, 111), seed=3)  # 11 samples: padded to 12
    shards = [DistributedEpochSampler(EpochSubsetSampler(torch.arange(100, 111), seed=3), 3, r) for r in range(3)]
    for epoch in (0, 1):
        for s in shards:
            s.set_epoch(epoch)
        parts = [list(s) for s in shards]
        assert [len(p) for p in parts] == [4, 4, 4] == [len(s) for s in shards]
        merged = [i for step in zip(*parts) for i in step]
        assert merged[:11] == base.epoch_indices(epoch).tolist()  # the single-process order, shared out
        assert merged[11:] == merged[:1]  # padding repeats the first index
    shards[0].set_epoch(0)
    first = list(shards[0])
    shards[0].set_epoch(1)
    assert list(shards[0]) != first


def test_load_data_shards_only_the_training_split():
    kwargs = {"batch_size": 16, "validation_split": 0.1, "seed": 1}
    single = load_data("digits", **kwargs)
    ranks = [load_data("digits", num_replicas=2, rank=r, **kwargs) for r in range(2)]
    for loaders in ranks:
        assert isinstance(loaders.train.sampler, DistributedEpochSampler)
        assert len(loaders.valid.sampler) == len(single.valid.sampler)  # every rank evaluates all of it
        assert len(loaders.test.sampler) == len(single.test.sampler)
    seen = set(ranks[0].train.sampler) | set(ranks[1].train.sampler)
    assert seen == set(single.train.sampler)


def test_batch_is_global_and_must_split_evenly():
    assert process_batch_size(256, None) == 256
    check_ddp_options(ClassifierOptions(batch_size=64), 2)
    with pytest.raises(ConfigError, match="multiple of 3"):
        check_ddp_options(ClassifierOptions(batch_size=64), 3)
    opts = ClassifierOptions(batch_size=64)
    opts.greedy.enabled = True
    with pytest.raises(ConfigError, match="--greedy .* one process"):
        check_ddp_options(opts, 2)
    with pytest.raises(ConfigError, match="teacher"):
        check_ddp_options(ClassifierOptions(batch_size=64, kd_teacher="resnet20_cifar", kd_teacher_wt=0.5), 2)


def test_device_of_a_rank_on_cpu():
    env = LaunchEnv(2, 1, 1, 2)
    assert ddp_device(ClassifierOptions(cpu=True, gpus="0,1"), env) == torch.device("cpu")


def test_ddp_flags():
    args = build_classify_parser().parse_args(["--ddp-timeout", "30", "--ddp-backend", "gloo"])
    opts = options_from_args(args)
    assert opts.ddp.timeout == 30 and opts.ddp.backend == "gloo"
    assert options_from_args(build_classify_parser().parse_args([])).ddp.timeout == 1800
    with pytest.raises(SystemExit):
        build_classify_parser().parse_args(["--ddp-timeout", "0"])


def test_helpers_are_no_ops_in_one_process():
    assert not is_active() and world_size() == 1
    draw = torch.rand(5)
    assert same_on_all_ranks(draw) is draw
    assert my_share([1, 2, 3]) == [1, 2, 3]
    assert shared_map(lambda x: x + 1, [1, 2]) == [2, 3]
    with pytest.raises(ZeroDivisionError):  # in one process a failure is the original exception
        shared_map(lambda x: 1 / x, [0])
    model = nn.Linear(3, 2)
    scheduler = CompressionScheduler(model)
    synced = SynchronizedScheduler(scheduler)
    synced.on_epoch_begin(0)
    synced.on_minibatch_end(0, 0, 1)
    synced.on_epoch_end(0)
    assert synced.masks is scheduler.masks and synced.mask_broadcasts == 0
