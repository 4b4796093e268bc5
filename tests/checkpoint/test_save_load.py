"""Saving and loading distiller-nn checkpoints: format, round trip, thinning replay, mismatches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from distiller.checkpoint import (
    FORMAT,
    checkpoint_summary,
    describe_checkpoint,
    load_checkpoint,
    load_lean_checkpoint,
    normalize_module_name,
    normalize_param_name,
    read_checkpoint,
    save_checkpoint,
)
from distiller.errors import CheckpointError
from distiller.thinning import ThinningPlan, applied_thinning_plans

KEEP = [0, 2, 5]


class Tiny(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)
        self.arch = "tiny"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


def thinning_plan() -> ThinningPlan:
    plan = ThinningPlan().add("conv1.weight", 0, KEEP)
    for name in ("bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
        plan.add(name, 0, KEEP)
    return plan.add("conv2.weight", 1, KEEP)


@pytest.fixture
def trained():
    """A thinned model with SGD momentum, masks and metrics: everything a checkpoint carries."""
    torch.manual_seed(0)
    model = Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    thinning_plan().apply(model, optimizer)
    mask = (torch.rand_like(model.conv2.weight) > 0.5).float()
    scheduler_state = {"masks_dict": {"module.conv2.weight": mask, "fc.weight": None}}
    return model, optimizer, scheduler_state


def save(directory, model, optimizer=None, scheduler_state=None, **kw):
    args = {"arch": "tiny", "dataset": "fake", "epoch": 7, "extras": {"best_top1": 55.5, "best_epoch": 6}}
    return save_checkpoint(
        directory, model=model, optimizer=optimizer, scheduler_state=scheduler_state, **{**args, **kw}
    )


def test_file_loads_with_plain_weights_only_and_has_the_documented_keys(tmp_path, trained):
    model, optimizer, sched = trained
    (path,) = save(tmp_path, model, optimizer, sched, rng_state={"torch": torch.get_rng_state()})
    assert path.name == "checkpoint.pth.tar"
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT
    assert set(raw) == {
        "format", "state_dict", "arch", "dataset", "epoch", "extras", "optimizer_state_dict", "optimizer_type",
        "compression_sched", "thinning_plans", "quantizer_metadata", "rng_state",
    }  # fmt: skip
    assert raw["optimizer_type"] == "SGD" and raw["epoch"] == 7 and raw["arch"] == "tiny"
    assert list(raw["compression_sched"]["masks_dict"]) == ["conv2.weight", "fc.weight"]
    assert raw["thinning_plans"] == [thinning_plan().to_dict()]  # taken from the model
    assert raw["state_dict"]["conv1.weight"].shape == (3, 3, 3, 3)


def test_round_trip_rebuilds_the_thinned_model(tmp_path, trained):
    model, optimizer, sched = trained
    save(tmp_path, model, optimizer, sched)
    fresh = Tiny()
    loaded = load_checkpoint(tmp_path / "checkpoint.pth.tar", fresh)
    assert (fresh.conv1.out_channels, fresh.bn1.num_features, fresh.conv2.in_channels) == (3, 3, 3)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    x = torch.randn(2, 3, 8, 8)
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x), model(x))
    assert (loaded.epoch, loaded.start_epoch, loaded.arch, loaded.dataset) == (7, 8, "tiny", "fake")
    assert loaded.extras == {"best_top1": 55.5, "best_epoch": 6} and not loaded.legacy
    assert torch.equal(loaded.masks["conv2.weight"], sched["masks_dict"]["module.conv2.weight"])
    assert loaded.thinning_plans == [thinning_plan()] and applied_thinning_plans(fresh) == [thinning_plan()]
    new_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    assert loaded.optimizer_type == "SGD"
    new_optimizer.load_state_dict(loaded.optimizer_state)
    for p_old, p_new in zip(model.parameters(), fresh.parameters()):
        torch.testing.assert_close(
            new_optimizer.state[p_new]["momentum_buffer"], optimizer.state[p_old]["momentum_buffer"]
        )
    fresh(x).sum().backward()
    new_optimizer.step()


def test_best_and_named_files_are_byte_copies(tmp_path, trained):
    model, optimizer, sched = trained
    paths = save(tmp_path / "new" / "dir", model, optimizer, sched, is_best=True, name="run1")
    assert [p.name for p in paths] == ["run1_checkpoint.pth.tar", "run1_best.pth.tar"]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["run1_best.pth.tar", "run1_checkpoint.pth.tar"]


def test_wrapped_model_saves_canonical_names(tmp_path):
    wrapper = nn.Module()
    wrapper.module = Tiny()
    save(tmp_path, wrapper)
    state = read_checkpoint(tmp_path / "checkpoint.pth.tar")["state_dict"]
    assert "conv1.weight" in state and not any("module" in k for k in state)
    load_checkpoint(tmp_path / "checkpoint.pth.tar", wrapper)  # and loads back into the wrapper


def test_numpy_metrics_are_converted_and_objects_refused(tmp_path):
    save(tmp_path, Tiny(), extras={"top1": np.float64(71.5), "hist": np.arange(3)})
    extras = read_checkpoint(tmp_path / "checkpoint.pth.tar")["extras"]
    assert extras["top1"] == 71.5 and type(extras["top1"]) is float
    assert torch.equal(extras["hist"], torch.arange(3))
    with pytest.raises(CheckpointError, match=r"extras'\]\['loss_fn'\] is a torch.nn.modules.loss.MSELoss"):
        save(tmp_path / "other", Tiny(), extras={"loss_fn": nn.MSELoss()})
    assert not (tmp_path / "other").exists()


def test_arch_mismatch_names_both(tmp_path):
    save(tmp_path, Tiny())
    other = Tiny()
    other.arch = "resnet20_cifar"
    with pytest.raises(CheckpointError, match=r"architecture 'tiny', but the model is 'resnet20_cifar'"):
        load_checkpoint(tmp_path / "checkpoint.pth.tar", other)


def test_another_architecture_without_arch_attribute(tmp_path):
    save(tmp_path, Tiny())
    other = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="another architecture") as info:
        load_checkpoint(tmp_path / "checkpoint.pth.tar", other)
    assert "Missing in the checkpoint: 0.weight" in str(info.value)


def test_shape_mismatch_lists_the_keys(tmp_path):
    save(tmp_path, Tiny(classes=4))
    model = Tiny(classes=10)
    with pytest.raises(CheckpointError, match=r"fc.weight: checkpoint \(4, 8\) vs model \(10, 8\)"):
        load_checkpoint(tmp_path / "checkpoint.pth.tar", model, strict=False)


def test_thinned_checkpoint_without_plan_explains_the_likely_cause(tmp_path, trained):
    model, _, _ = trained
    save(tmp_path, model, thinning_plans=[])
    with pytest.raises(CheckpointError, match="without its thinning plans"):
        load_checkpoint(tmp_path / "checkpoint.pth.tar", Tiny())


def test_strict_false_reports_missing_and_unexpected(tmp_path):
    torch.save({"conv1.weight": torch.zeros(6, 3, 3, 3), "extra.weight": torch.zeros(1)}, tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="Not in the model: extra.weight"):
        load_checkpoint(tmp_path / "sd.pt", Tiny())
    loaded = load_checkpoint(tmp_path / "sd.pt", Tiny(), strict=False)
    assert loaded.unexpected_keys == ["extra.weight"] and "fc.weight" in loaded.missing_keys
    assert loaded.epoch is None and loaded.start_epoch == 0


def test_bare_state_dict_is_accepted(tmp_path):
    model = Tiny()
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "weights.pth")
    ckpt = read_checkpoint(tmp_path / "weights.pth")
    assert ckpt["format"] == "state-dict" and "conv1.weight" in ckpt["state_dict"]
    fresh = load_lean_checkpoint(tmp_path / "weights.pth", Tiny())
    assert torch.equal(fresh.fc.weight, model.fc.weight)


def test_lean_load_replays_thinning(tmp_path, trained):
    model, optimizer, sched = trained
    save(tmp_path, model, optimizer, sched)
    fresh = load_lean_checkpoint(tmp_path / "checkpoint.pth.tar", Tiny())
    assert fresh.conv1.weight.shape == (3, 3, 3, 3)
    assert torch.equal(fresh.conv2.weight, model.conv2.weight)


def test_newer_format_is_refused(tmp_path):
    torch.save({"format": "distiller-nn/9", "state_dict": {}}, tmp_path / "future.pth.tar")
    with pytest.raises(CheckpointError, match="newer than this version"):
        read_checkpoint(tmp_path / "future.pth.tar")


def test_describe_lists_metadata_tensors_masks_and_plans(tmp_path, trained):
    model, optimizer, sched = trained
    save(tmp_path, model, optimizer, sched)
    text = describe_checkpoint(tmp_path / "checkpoint.pth.tar")
    for expected in ("arch", "tiny", "epoch", "extras.best_top1", "55.5", "SGD", "conv1.weight", "(3, 3, 3, 3)",
                     "1 of 2 parameters masked", "thinning_plans[0]", "6 slices of 6 tensors"):  # fmt: skip
        assert expected in text, expected
    rows = dict(checkpoint_summary(tmp_path / "checkpoint.pth.tar"))
    assert rows["epoch"] == "7" and rows["format"] == FORMAT


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("module.layer1.0.conv1.weight", "layer1.0.conv1.weight"),
        ("features.module.0.weight", "features.0.weight"),
        ("layer1.0.conv1.weight", "layer1.0.conv1.weight"),
        ("module.fc", "fc"),
    ],
)
def test_normalize_names(name, canonical):
    assert normalize_param_name(name) == canonical
    assert normalize_module_name(name) == canonical
