"""Importing checkpoints of the original Distiller (legacy pickles with recipes and class objects)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

from distiller.checkpoint import describe_checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
from distiller.errors import CheckpointError
from distiller.models import create_model
from distiller.thinning import ThinningRecipe
from shared_data import CHECKPOINTS

THINNED_WIDTHS = [11, 8, 9, 22, 20, 32, 52, 56, 64]
DENSE_WIDTHS = [16, 16, 16, 32, 32, 32, 64, 64, 64]
KEEP = [0, 1, 3]


def conv1_widths(model: nn.Module) -> list[int]:
    return [model.get_submodule(f"layer{s}.{b}.conv1").out_channels for s in (1, 2, 3) for b in range(3)]


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 2, 3)


def write_legacy_file(path: Path) -> nn.Module:
    """What the original's save_checkpoint wrote: a non-zip pickle with a recipe and a class object."""
    torch.manual_seed(0)
    dense = Small()
    optimizer = torch.optim.SGD(dense.parameters(), lr=0.1, momentum=0.9)
    for p in dense.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()  # momentum buffers of the dense shapes, as the original left them
    index = torch.tensor(KEEP)
    recipe = ThinningRecipe(
        modules={
            "module.conv2": {"in_channels": 3},
            "module.bn1": {"num_features": 3, "running_mean": (0, index), "running_var": (0, index)},
        },
        parameters={
            "module.conv1.weight": [(0, index)],
            "module.bn1.weight": [(0, index)],
            "module.bn1.bias": [(0, index)],
            "module.conv2.weight": [(1, index)],
        },
    )
    state = {k: v for k, v in dense.state_dict().items() if "num_batches_tracked" not in k}
    for name in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
        state[name] = state[name][index]
    state["conv2.weight"] = state["conv2.weight"][:, index]
    torch.save(
        {
            "epoch": 4,
            "arch": "small",
            "state_dict": {f"module.{k}": v for k, v in state.items()},
            "best_top1": 12.5,
            "optimizer_state_dict": optimizer.state_dict(),
            "optimizer_type": torch.optim.SGD,
            "compression_sched": {
                "masks_dict": {"module.conv2.weight": torch.ones(2, 3, 3, 3), "module.bn1.weight": None}
            },
            "thinning_recipes": [recipe],
        },
        path,
        _use_new_zipfile_serialization=False,
    )
    return dense


def test_synthetic_legacy_file_is_imported_safely(tmp_path):
    path = tmp_path / "legacy.pth.tar"
    dense = write_legacy_file(path)
    assert path.read_bytes()[:4] == b"\x80\x02\x8a\x0a"  # legacy magic, as in the originals
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(path, weights_only=True)  # plain weights_only refuses it: the allowlist is needed
    ckpt = read_checkpoint(path)
    assert ckpt["format"] == "distiller-legacy"
    assert ckpt["optimizer_type"] == "SGD" and ckpt["extras"] == {"best_top1": 12.5}
    assert list(ckpt["compression_sched"]["masks_dict"]) == ["conv2.weight", "bn1.weight"]
    assert all(not k.startswith("module.") for k in ckpt["state_dict"])
    model = Small()
    model.arch = "small"
    loaded = load_checkpoint(path, model)
    assert loaded.legacy and loaded.start_epoch == 5
    assert (model.conv1.out_channels, model.bn1.num_features, model.conv2.in_channels) == (3, 3, 3)
    assert torch.equal(model.conv1.weight, dense.conv1.weight[KEEP])
    # The dense-shaped momentum is thinned with the plan, so training can resume.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.load_state_dict(loaded.optimizer_state)
    assert optimizer.state[model.conv1.weight]["momentum_buffer"].shape == (3, 3, 3, 3)


def test_recipe_stand_in_has_the_dotted_name_the_unpickler_looks_up(tmp_path):
    path = tmp_path / "legacy.pth.tar"
    write_legacy_file(path)
    assert f"{ThinningRecipe.__module__}.{ThinningRecipe.__qualname__}" == "distiller.thinning.ThinningRecipe"
    with torch.serialization.safe_globals([ThinningRecipe, torch.optim.SGD]):  # the class form, not (obj, name)
        raw = torch.load(path, weights_only=True)
    assert type(raw["thinning_recipes"][0]) is ThinningRecipe


def test_other_old_checkpoint_layouts_are_imported(tmp_path):
    model = nn.Linear(2, 2)
    path = tmp_path / "imagenet_example.pth.tar"
    torch.save({"epoch": 3, "arch": "linear", "state_dict": model.state_dict(), "best_acc1": 1.0}, path)
    ckpt = read_checkpoint(path)
    assert ckpt["format"] == "distiller-legacy" and ckpt["epoch"] == 3
    torch.save({"state_dict": [1, 2]}, path)
    with pytest.raises(CheckpointError, match="not a dict of tensors"):
        read_checkpoint(path)


def test_unknown_legacy_class_is_still_refused(tmp_path):
    path = tmp_path / "quantized.pth.tar"
    torch.save({"state_dict": {}, "arch": "x", "quantizer_metadata": {"type": nn.Conv2d}}, path,
               _use_new_zipfile_serialization=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="torch.nn.modules.conv.Conv2d"):
        read_checkpoint(path)


# --- the original's real checkpoints ------------------------------------------------------------

FILES = {
    "checkpoint_trained_dense.pth.tar": (179, 92.54, DENSE_WIDTHS, 0),
    "checkpoint_trained_4D_regularized_5Lremoved.pth.tar": (179, 90.62, DENSE_WIDTHS, 5),
    "checkpoint_trained_4D_regularized_5Lremoved_finetuned.pth.tar": (249, 94.24, DENSE_WIDTHS, 0),
    "checkpoint_trained_ch_regularized_dense.pth.tar": (179, 91.70, DENSE_WIDTHS, 7),
    "checkpoint_trained_channel_regularized_resnet20.pth.tar": (179, 91.42, THINNED_WIDTHS, 7),
    "checkpoint_trained_channel_regularized_resnet20_finetuned.pth.tar": (277, 91.42, THINNED_WIDTHS, 0),
    "resnet20_cifar10_checkpoint.pth.tar": (0, 9.92, DENSE_WIDTHS, 0),
}


def real(name: str) -> Path:
    path = CHECKPOINTS / name
    if not path.is_file():
        pytest.skip(f"original Distiller checkpoints not found at {CHECKPOINTS} (../shared/data is absent)")
    return path


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(FILES))
def test_original_checkpoint_loads(name):
    path = real(name)
    epoch, best_top1, widths, n_masks = FILES[name]
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    model = create_model("resnet20_cifar")
    loaded = load_checkpoint(path, model)
    assert loaded.legacy and loaded.epoch == epoch and loaded.arch == "resnet20_cifar"
    assert loaded.extras["best_top1"] == pytest.approx(best_top1)
    assert conv1_widths(model) == widths
    assert len(loaded.thinning_plans) == (1 if widths == THINNED_WIDTHS else 0)
    masks = loaded.masks
    assert len(masks) == 65 and not any("module" in k for k in masks)
    assert sum(m is not None for m in masks.values()) == n_masks
    params = dict(model.named_parameters())
    assert all(m is None or m.shape == params[k].shape for k, m in masks.items())
    assert loaded.optimizer_type == "SGD"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.load_state_dict(loaded.optimizer_state)
    assert all(s["momentum_buffer"].shape == p.shape for p, s in optimizer.state.items())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.realdata
def test_thinned_original_resaves_in_the_new_format(tmp_path):
    model = create_model("resnet20_cifar")
    loaded = load_checkpoint(real("checkpoint_trained_channel_regularized_resnet20.pth.tar"), model)
    (path,) = save_checkpoint(
        tmp_path, model=model, arch="resnet20_cifar", dataset="cifar10", epoch=loaded.epoch,
        scheduler_state=loaded.scheduler_state, extras=loaded.extras,
    )  # fmt: skip
    assert len(torch.load(path, weights_only=True)["thinning_plans"]) == 1
    fresh = create_model("resnet20_cifar")
    again = load_checkpoint(path, fresh)
    assert conv1_widths(fresh) == THINNED_WIDTHS and not again.legacy
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


@pytest.mark.realdata
def test_describe_original_thinned_checkpoint():
    text = describe_checkpoint(real("checkpoint_trained_channel_regularized_resnet20.pth.tar"))
    assert "distiller-legacy" in text and "resnet20_cifar" in text and "thinning_plans[0]" in text
    assert "layer1.0.conv1.weight" in text and "(11, 16, 3, 3)" in text
