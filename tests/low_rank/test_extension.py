"""The TruncatedSVD schedule extension: factorizing mid-training, from Python and from the CLI."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from distiller.config import dict_config
from distiller.errors import ConfigError
from distiller.low_rank import FactorizedLayer, TruncatedSVD
from distiller.models import create_model
from distiller.scheduler import EXTENSIONS

SCHEDULE = {
    "version": 1,
    "extensions": {
        "tsvd": {
            "class": "TruncatedSVD",
            "layers": {"fc": {"rank": 6}, "conv2": {"rank": 8, "method": "spatial"}},
        }
    },
    "policies": [{"extension": {"instance_name": "tsvd"}, "epochs": [1]}],
}


def _train_epoch(model, scheduler, optimizer, epoch, x, y, steps=3):
    scheduler.on_epoch_begin(epoch, optimizer)
    for step in range(steps):
        scheduler.on_minibatch_begin(epoch, step, steps, optimizer)
        loss = nn.functional.cross_entropy(model(x), y)
        loss = scheduler.before_backward_pass(epoch, step, steps, loss, optimizer)
        optimizer.zero_grad()
        loss.backward()
        scheduler.before_parameter_optimization(epoch, step, steps, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, step, steps, optimizer)
    scheduler.on_epoch_end(epoch, optimizer)


def test_registered_under_both_names():
    assert EXTENSIONS.get("TruncatedSVD") is TruncatedSVD
    assert EXTENSIONS.get("LowRankDecomposition") is TruncatedSVD


def test_factorizes_once_at_its_epoch_and_training_continues():
    torch.manual_seed(0)
    model = create_model("simplenet_digits", "digits")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = dict_config(model, optimizer, SCHEDULE)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    _train_epoch(model, scheduler, optimizer, 0, x, y)
    assert isinstance(model.fc, nn.Linear)
    _train_epoch(model, scheduler, optimizer, 1, x, y)
    assert isinstance(model.fc, FactorizedLayer) and model.fc.rank == 6
    assert isinstance(model.conv2, FactorizedLayer) and model.conv2.method == "spatial"
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in optimizer.param_groups[0]["params"]] == list(names.values())
    assert set(scheduler.masks) == set(names.values())
    policy = scheduler.entries[0].policy
    assert policy.applied and policy.state_dict() == {"applied": True}
    assert policy.reports[0]["fc"].params_after == 6 * (512 + 10) + 10
    before = model.fc[0].weight.detach().clone()
    _train_epoch(model, scheduler, optimizer, 2, x, y)  # the same optimizer trains the factors
    assert not torch.equal(before, model.fc[0].weight)
    assert all(optimizer.state[p]["momentum_buffer"].shape == p.shape for p in model.parameters())


def test_a_window_of_epochs_factorizes_only_once():
    model = create_model("simplenet_digits", "digits")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    schedule = {
        **SCHEDULE,
        "policies": [{"extension": {"instance_name": "tsvd"}, "starting_epoch": 0, "ending_epoch": 3, "frequency": 1}],
    }
    scheduler = dict_config(model, optimizer, schedule)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    for epoch in range(3):
        _train_epoch(model, scheduler, optimizer, epoch, x, y, steps=1)
    assert isinstance(model.fc, FactorizedLayer) and isinstance(model.fc[0], nn.Linear)


def test_layers_already_factorized_are_skipped():
    """A run resumed after the factorization has it replayed from the checkpoint already."""
    from distiller.low_rank import low_rank_decompose

    model = create_model("simplenet_digits", "digits")
    low_rank_decompose(model, {"fc": 6})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = dict_config(model, optimizer, SCHEDULE)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    fc = model.fc
    _train_epoch(model, scheduler, optimizer, 1, x, y, steps=1)
    assert model.fc is fc and isinstance(model.conv2, FactorizedLayer)


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ({"fcc": 4}, r"extensions\.tsvd.*no module 'fcc'.*Did you mean 'fc'"),
        ({"fc": 11}, "exceeds the full rank 10"),
        ({"bn1": 2}, "is a BatchNorm2d"),
        ({"fc": {"energy": 1.2}}, r"layers\.fc\.energy must be a fraction"),
    ],
)
def test_schedule_errors_are_reported_when_loading(layers, match):
    model = create_model("simplenet_digits", "digits")
    schedule = {**SCHEDULE, "extensions": {"tsvd": {"class": "LowRankDecomposition", "layers": layers}}}
    with pytest.raises(ConfigError, match=match):
        dict_config(model, torch.optim.SGD(model.parameters(), lr=0.1), schedule)


# --- the CLI on digits -----------------------------------------------------------------------------

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-b", "64", "--lr", "0.1", "-j", "0", "--deterministic")

SCHEDULE_YAML = """\
version: 1
extensions:
  tsvd:
    class: TruncatedSVD
    layers:
      fc: {rank: 4}
      conv2: {energy: 0.9, method: spatial}
lr_schedulers:
  decay:
    class: ExponentialLR
    gamma: 0.8
policies:
  - extension:
      instance_name: tsvd
    epochs: [1]
  - lr_scheduler:
      instance_name: decay
    starting_epoch: 0
    ending_epoch: 4
    frequency: 1
"""


@pytest.fixture
def schedule_file(tmp_path):
    path = tmp_path / "tsvd.yaml"
    path.write_text(SCHEDULE_YAML)
    return path


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_cli_factorizes_mid_training_and_the_checkpoint_resumes_bit_equal(run_cli, tmp_path, schedule_file):
    common = (*DIGITS, "--etrs", "0.5", "--seed", "3", "--compress", schedule_file)
    full = run_cli("classify", *common, "--epochs", "3", out_dir=tmp_path / "full")
    assert full.code == 0, full.err
    assert "tsvd at epoch 1: fc (Linear) -> rank 4" in full.out
    losses = [float(m) for m in re.findall(r"^Epoch \d+: train loss ([\d.]+)", full.out, re.MULTILINE)]
    assert len(losses) == 3 and losses[2] < losses[1] < losses[0], full.out  # it trains on after factorizing
    assert full.result()[0] >= 50.0, full.out
    ckpt = full.log_dir() / "checkpoint.pth.tar"
    saved = torch.load(ckpt, weights_only=True)
    assert [(r["module"], r["method"]) for r in saved["low_rank"]] == [("fc", "linear"), ("conv2", "spatial")]
    assert saved["low_rank"][0]["rank"] == 4
    assert "fc.0.weight" in saved["state_dict"] and "fc.weight" not in saved["state_dict"]
    assert saved["compression_sched"]["masks_dict"].keys() == saved["state_dict"].keys() - {
        k for k in saved["state_dict"] if "running_" in k or "num_batches" in k
    }

    part = run_cli("classify", *common, "--epochs", "2", out_dir=tmp_path / "part")
    assert part.code == 0, part.err
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
    expected, actual = _weights(ckpt), _weights(resumed.log_dir() / "checkpoint.pth.tar")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert resumed.result() == full.result()

    evaluated = run_cli("classify", *DIGITS, "--evaluate", "--resume-from", ckpt, out_dir=tmp_path / "eval")
    assert evaluated.code == 0, evaluated.err
    assert evaluated.result() == full.result()
