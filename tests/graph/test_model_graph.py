"""ModelGraph: names, shapes, MACs and queries on real architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.errors import GraphError
from distiller.graph import ModelGraph, build_graph, example_input
from distiller.models import create_model


@pytest.fixture(scope="module")
def resnet20():
    return build_graph(create_model("resnet20_cifar", "cifar10"))


def test_resnet20_macs_match_the_original(resnet20):
    assert resnet20.total_macs == 40_813_184
    convs = [n for n in resnet20.nodes.values() if n.op_type == "Conv2d"]
    assert len(convs) == 21
    assert resnet20["conv1"].macs == 442_368
    assert resnet20["layer2.0.downsample.0"].macs == 131_072
    assert resnet20["fc"].macs == 640


def test_simplenet_per_layer_macs():
    graph = build_graph(create_model("simplenet_cifar", "cifar10"))
    assert [n.macs for n in graph.nodes.values() if n.macs] == [352800, 240000, 48000, 10080, 840]


def test_nodes_carry_module_names_shapes_and_parameters(resnet20):
    node = resnet20["layer2.0.conv1"]
    assert node.kind == "module" and node.op_type == "Conv2d"
    assert node.input_shapes == [(1, 16, 32, 32)] and node.output_shape == (1, 32, 16, 16)
    assert node.params == ["layer2.0.conv1.weight"]
    add = resnet20["layer1.0.residual_eltwiseadd"]
    assert add.kind == "function" and add.op_type == "add"
    assert add.inputs == ["relu", "layer1.0.bn2"]


def test_functional_ops_are_nodes_named_after_their_module():
    graph = build_graph(create_model("torchvision.resnet18", "imagenet"))
    assert graph["layer1.0.add"].op_type == "add"
    assert graph["flatten"].op_type == "flatten"
    assert graph.successors("avgpool") == ["flatten"]


def test_typed_queries_search_through_other_ops(resnet20):
    assert resnet20.predecessors("layer1.1.conv1", ["Conv2d"]) == ["conv1", "layer1.0.conv2"]
    assert resnet20.successors("layer3.2.conv2", ["Linear"]) == ["fc"]
    assert resnet20.successors("layer1.0.conv1", ["BatchNorm2d"]) == ["layer1.0.bn1"]


def test_adjacency_topological_order_and_parameter_layers(resnet20):
    order = resnet20.layers_topological_order()
    assert order[:3] == ["conv1", "bn1", "relu"] and order[-1] == "fc"
    adjacency = resnet20.adjacency_map(dedicated_modules_only=True)
    preds, succs = adjacency["layer1.0.bn2"]
    assert preds == ["layer1.0.conv2"] and succs == ["layer1.0.relu2"]
    assert resnet20.param_layer("module.layer3.0.conv1.weight") == "layer3.0.conv1"
    assert ("fc", "fc.bias") in resnet20.named_params_layers()


def test_repeated_module_calls_get_numbered_names():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(self.relu(self.conv(x))))

    graph = ModelGraph(Twice(), torch.randn(1, 3, 4, 4))
    assert {"conv", "conv#1", "relu", "relu#1"} <= set(graph.nodes)
    assert graph.layers_topological_order() == ["conv", "relu"]


def test_untraceable_model_falls_back_to_hooks():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.a(x) if x.sum() > 0 else self.b(x)

    graph = ModelGraph(Branchy(), torch.ones(1, 3, 8, 8))
    assert not graph.traced and "cannot trace" in graph.trace_error
    assert graph["a"].macs == 6 * 6 * 4 * 27 and graph["a"].inputs == ["input"]
    with pytest.raises(GraphError, match="cannot trace"):
        ModelGraph(Branchy(), torch.ones(1, 3, 8, 8), allow_fallback=False)


def test_example_input_comes_from_the_model_or_dataset():
    model = create_model("simplenet_mnist", "mnist")
    assert tuple(example_input(model).shape) == (1, 1, 28, 28)
    assert tuple(example_input(nn.Linear(2, 2), "cifar10", batch_size=2).shape) == (2, 3, 32, 32)
    with pytest.raises(GraphError, match="input shape"):
        example_input(nn.Linear(2, 2))


def test_a_wrong_example_input_is_a_clear_error():
    with pytest.raises(GraphError, match="example input"):
        ModelGraph(create_model("simplenet_cifar", "cifar10"), torch.randn(1, 1, 28, 28))


def test_unknown_node_suggests_close_names(resnet20):
    with pytest.raises(GraphError, match="layer1.0.conv1"):
        resnet20["layer1.0.conv"]
