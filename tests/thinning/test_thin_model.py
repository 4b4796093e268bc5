"""thin_model and the original entry points: masked model == thinned model, on real architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.checkpoint import load_checkpoint, save_checkpoint
from distiller.errors import ModelError
from distiller.graph import build_graph
from distiller.graph.coupling import channel_coupling
from distiller.models import create_model
from distiller.scheduler import CompressionScheduler
from distiller.thinning import (
    ThinningPlan,
    contract_model,
    plan_from_masks,
    remove_channels,
    remove_filters,
    thin_model,
)
from thinning_helpers import mask_and_thin, randomize_batchnorm

ACCEPTANCE_MODELS = [
    ("resnet20_cifar", "cifar10"),
    ("preact_resnet20_cifar", "cifar10"),
    ("vgg16_bn_cifar", "cifar10"),
    ("plain20_cifar", "cifar10"),
    ("mobilenet", "imagenet"),
    ("simplenet_mnist", "mnist"),
    ("simplenet_cifar", "cifar10"),
]


@pytest.mark.parametrize(("arch", "dataset"), ACCEPTANCE_MODELS, ids=[a for a, _ in ACCEPTANCE_MODELS])
def test_thinned_model_computes_the_masked_function(arch, dataset):
    model = create_model(arch, dataset)
    batch = 2 if dataset == "imagenet" else 4
    x = torch.randn(batch, *model.input_shape, generator=torch.Generator().manual_seed(1))
    result = mask_and_thin(model, x)
    assert result.relative_error < 1e-5
    assert result.params_after < 0.7 * result.params_before
    assert result.macs_after < 0.7 * result.macs_before
    coupling = channel_coupling(build_graph(model))
    assert all(g.num_channels >= 1 for g in coupling.groups)


def _masked_simplenet(seed=0):
    model = create_model("simplenet_cifar", "cifar10").eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(generator=generator)
    return model


def test_filter_pruned_channels_fold_their_constant_into_the_consumer():
    """conv2's filters 0-3 are zero but its bias is not: the channels carry constants into fc1."""
    model = _masked_simplenet()
    with torch.no_grad():
        model.conv2.weight[:4] = 0
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    report = thin_model(model, mode="filters")
    assert model.conv2.out_channels == 12 and model.fc1.in_features == 12 * 25
    assert report.folded == ["fc1.bias"] and not report.approximate
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_constant_into_a_bias_free_conv_goes_to_the_next_batchnorm():
    model = nn.Sequential(
        nn.Conv2d(3, 6, 1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 4, 1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 2),
    )
    randomize_batchnorm(model, torch.Generator().manual_seed(3))
    model.eval()
    with torch.no_grad():
        model[0].weight[[1, 4]] = 0
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        expected = model(x)
    report = thin_model(model, example=x, mode="filters")
    assert report.folded == ["4.running_mean"]
    assert model[3].in_channels == 4
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_zero_padded_consumers_are_exact_inside_the_borders():
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1))
    with torch.no_grad():
        model[0].weight[2] = 0
        model[0].bias[2] = 0.7
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
    report = thin_model(model, example=x, mode="filters")
    assert report.approximate == ["2"]
    torch.testing.assert_close(model(x)[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], rtol=1e-5, atol=1e-5)


def test_channel_pruning_removes_the_producers_filters():
    model = _masked_simplenet()
    with torch.no_grad():
        model.conv2.weight[:, [0, 5]] = 0  # conv2 ignores conv1's channels 0 and 5
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    remove_channels(model, None, "simplenet_cifar", "cifar10")
    assert model.conv1.out_channels == 4 and model.conv2.in_channels == 4
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    model = _masked_simplenet()
    with torch.no_grad():
        model.conv2.weight[:, [0, 5]] = 0
    remove_filters(model, None, "simplenet_cifar", "cifar10")  # filters are not zero: nothing to do
    assert model.conv1.out_channels == 6


def test_masks_are_used_without_being_applied_and_are_thinned():
    model = _masked_simplenet()
    scheduler = CompressionScheduler(model)
    mask = torch.ones_like(model.conv1.weight)
    mask[[1, 2]] = 0
    scheduler.masks["conv1.weight"] = mask
    with torch.no_grad():
        model.conv1.weight.mul_(mask)
    contract_model(model, scheduler.masks, "simplenet_cifar", "cifar10")
    assert model.conv1.out_channels == 4
    assert scheduler.masks["conv1.weight"].mask.shape == model.conv1.weight.shape


def test_removing_every_channel_of_a_layer_is_refused():
    model = _masked_simplenet()
    with torch.no_grad():
        model.conv1.weight.zero_()
        model.conv1.bias.zero_()
    before = model.conv1.weight.shape
    with pytest.raises(ModelError, match="all 6 channels of conv1"):
        thin_model(model)
    assert model.conv1.weight.shape == before


def test_unknown_mode_is_refused():
    with pytest.raises(ModelError, match="thinning mode"):
        plan_from_masks(build_graph(_masked_simplenet()), mode="rows")


@pytest.mark.parametrize("optimizer_cls", [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW])
def test_training_continues_with_the_same_optimizer(optimizer_cls):
    model = create_model("resnet20_cifar", "cifar10")
    kwargs = {"momentum": 0.9} if optimizer_cls is torch.optim.SGD else {}
    optimizer = optimizer_cls(model.parameters(), lr=0.01, **kwargs)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    with torch.no_grad():
        model.layer1.__getitem__(0).conv1.weight[:8] = 0
    report = thin_model(model, optimizer=optimizer, mode="filters")
    assert report.num_removed == 8
    for p in model.parameters():
        for value in optimizer.state[p].values():
            if isinstance(value, torch.Tensor) and value.dim():
                assert value.shape == p.shape
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def test_checkpoint_replays_the_plan_with_folded_constants(tmp_path):
    model = _masked_simplenet()
    with torch.no_grad():
        model.conv2.weight[:4] = 0
    thin_model(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    save_checkpoint(tmp_path, model=model, arch="simplenet_cifar", dataset="cifar10", epoch=0)
    fresh = create_model("simplenet_cifar", "cifar10")
    load_checkpoint(tmp_path / "checkpoint.pth.tar", fresh)
    assert fresh.conv2.out_channels == 12
    torch.testing.assert_close(fresh.eval()(x), expected)
    data = ThinningPlan.from_dict(model.thinning_plans[0].to_dict())
    assert data == model.thinning_plans[0] and data.shifts


def test_data_parallel_wrapped_model_thins_with_canonical_names():
    model = _masked_simplenet()
    with torch.no_grad():
        model.conv1.weight[:, :, :, :] = 0
        model.conv1.weight[0, 0, 0, 0] = 1.0
        model.conv1.weight[3, 0, 0, 0] = 1.0
    wrapped = nn.DataParallel(model)
    report = thin_model(wrapped, dataset="cifar10")
    assert report.num_removed == 4 and model.conv1.out_channels == 2
    assert all(not s.tensor.startswith("module.") for s in report.plan.slices)
