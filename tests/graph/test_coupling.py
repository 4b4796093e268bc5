"""Channel coupling on the structures that made the original's thinning fail, checked by thinning:
a masked model and its thinned copy must compute the same function."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distiller.errors import GraphError
from distiller.graph import ModelGraph, build_graph
from distiller.graph.coupling import channel_coupling
from distiller.models import create_model
from thinning_helpers import mask_and_thin


def _coupling(model, shape):
    return channel_coupling(ModelGraph(model, torch.randn(1, *shape)))


def test_resnet20_groups_follow_the_residual_stages():
    coupling = channel_coupling(build_graph(create_model("resnet20_cifar", "cifar10")))
    stage1 = coupling.group_of("conv1")[0]
    assert stage1.layers("producer") == ["conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"]
    assert stage1.num_channels == 16 and stage1.prunable
    assert {"layer1.0.conv1", "layer2.0.conv1", "layer2.0.downsample.0"} <= set(stage1.layers("consumer"))
    assert "bn1" in stage1.layers("passive")
    stage3 = coupling.group_of("layer3.0.downsample.0")[0]
    assert set(stage3.layers("producer")) == {
        "layer3.0.conv2",
        "layer3.0.downsample.0",
        "layer3.1.conv2",
        "layer3.2.conv2",
    }
    assert stage3.layers("consumer")[-1] == "fc"
    logits = coupling.group_of("fc")[0]
    assert not logits.prunable and "output" in logits.blocked
    assert len(coupling.prunable) == 12


class Inception(nn.Module):
    """Concatenation, then a Linear over a non-square feature map."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(10)
        self.c = nn.Conv2d(10, 5, 1)
        self.fc = nn.Linear(5 * 3 * 5, 2)

    def forward(self, x):
        y = F.relu(self.bn(torch.cat([self.a(x), self.b(x)], 1)))
        return self.fc(torch.flatten(self.c(y), 1))


def test_concatenation_offsets_into_the_consumer():
    coupling = _coupling(Inception(), (3, 3, 5))
    b = coupling.group_of("b")[0]
    bn = next(m for m in b.members if m.tensor == "bn.weight")
    assert bn.positions[0] == [4] and bn.positions[5] == [9]
    c_in = next(m for m in b.members if m.tensor == "c.weight")
    assert c_in.dim == 1 and c_in.positions[2] == [6]
    fc = next(m for g in coupling.group_of("c") for m in g.members if m.tensor == "fc.weight")
    assert fc.positions[1] == list(range(15, 30))  # one channel = its 3x5 positions after flatten


class MobileSE(nn.Module):
    """Pointwise -> depthwise -> squeeze-and-excitation -> pointwise, with a residual."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.expand = nn.Conv2d(8, 16, 1)
        self.bn1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.bn2 = nn.BatchNorm2d(16)
        self.se_reduce, self.se_expand = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.project = nn.Conv2d(16, 8, 1)
        self.bn3 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        y = F.hardswish(self.bn1(self.expand(x)))
        y = F.relu6(self.bn2(self.dw(y)))
        s = F.adaptive_avg_pool2d(y, 1)
        y = y * torch.sigmoid(self.se_expand(F.relu(self.se_reduce(s))))
        x = x + self.bn3(self.project(y))
        return self.head(x.mean((2, 3)))


def test_depthwise_and_squeeze_excitation_join_the_expanded_channels():
    coupling = _coupling(MobileSE(), (3, 8, 8))
    expanded = coupling.group_of("expand")[0]
    assert set(expanded.layers("producer")) == {"expand", "se_expand"}
    assert {"dw", "bn1", "bn2"} <= set(expanded.layers("passive"))
    assert {"se_reduce", "project"} <= set(expanded.layers("consumer"))
    stream = coupling.group_of("stem")[0]
    assert set(stream.layers("producer")) == {"stem", "project"}


class GroupedShuffle(nn.Module):
    """Grouped convolution, channel shuffle (view/transpose/view) and chunk."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        y = F.relu(self.bn(self.g(self.a(x))))
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        left, right = y.chunk(2, dim=1)
        y = torch.cat([left, self.b(right)], 1)
        return self.fc(y.mean((2, 3)))


def test_grouped_convolution_removes_the_same_position_in_every_group():
    coupling = _coupling(GroupedShuffle(), (3, 6, 6))
    into_grouped = coupling.group_of("a")[0]
    producer = next(m for m in into_grouped.members if m.tensor == "a.weight")
    assert producer.positions[0] == [0, 4]  # position 0 of both groups of g's input
    # The shuffle interleaves the groups and chunk(2) must keep equal halves: position i of the first
    # half (straight to fc) goes with position i of the second (through b).
    (shuffled,) = coupling.group_of("g")
    assert shuffled.num_channels == 2
    assert sorted(map(sorted, next(m for m in shuffled.members if m.tensor == "g.weight").positions)) == [
        [0, 2, 4, 6],
        [1, 3, 5, 7],
    ]
    assert set(shuffled.layers("consumer")) == {"b", "fc"}


@pytest.mark.parametrize(
    ("model", "shape"), [(Inception, (3, 3, 5)), (MobileSE, (3, 8, 8)), (GroupedShuffle, (3, 6, 6))]
)
def test_thinned_structures_compute_the_masked_function(model, shape):
    torch.manual_seed(0)
    result = mask_and_thin(model(), torch.randn(4, *shape))
    assert result.report.num_removed > 0
    assert result.params_after < result.params_before and result.macs_after < result.macs_before
    assert result.relative_error < 1e-5


def test_layer_norm_over_channels_blocks_them():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.norm, self.fc2 = nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2)

        def forward(self, x):
            return self.fc2(self.norm(self.fc1(x)))

    group = _coupling(Tokens(), (5, 4)).group_of("fc1")[0]
    assert not group.prunable and "LayerNorm" in group.blocked


def test_coupling_needs_a_traced_graph():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.a(x) if x.sum() > 0 else x

    with pytest.raises(GraphError, match="torch.fx"):
        channel_coupling(ModelGraph(Branchy(), torch.ones(1, 3, 8, 8)))


def test_group_importance_aggregates_every_member():
    model = Inception()
    coupling = _coupling(model, (3, 3, 5))
    group = coupling.group_of("a")[0]
    tensors = dict(model.named_parameters())
    scores = group.importance(tensors, p=1.0)
    expected = tensors["a.weight"][1].abs().sum() + tensors["c.weight"][:, 1].abs().sum()
    torch.testing.assert_close(scores[1], expected.detach())
    only_filters = group.importance(tensors, roles=("producer",))
    torch.testing.assert_close(only_filters[1], tensors["a.weight"][1].abs().sum().detach())


def test_coupled_masks_rank_by_the_requested_roles():
    from distiller.pruning.coupled import coupled_group_masks

    model = Inception()
    with torch.no_grad():
        model.a.weight.copy_(torch.arange(4.0).reshape(4, 1, 1, 1).expand_as(model.a.weight))  # filter 0 smallest
        model.c.weight[:, :4] = torch.tensor([9.0, 1.0, 9.0, 9.0]).reshape(1, 4, 1, 1)  # channel 1 least read
    coupling = _coupling(model, (3, 3, 5))
    group = coupling.group_of("a")
    tensors = dict(model.named_parameters())
    by_filters = coupled_group_masks(group, tensors, 0.25, roles=("producer",))
    assert by_filters["a.weight"][:, 0, 0, 0].tolist() == [0.0, 1.0, 1.0, 1.0]
    by_readers = coupled_group_masks(group, tensors, 0.25, roles=("consumer",))
    assert by_readers["c.weight"][0, :4, 0, 0].tolist() == [1.0, 0.0, 1.0, 1.0]
