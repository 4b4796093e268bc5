"""modularize: functional ops and re-used modules become dedicated modules; the function is unchanged."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import fx, nn

from distiller.errors import GraphError
from distiller.graph import ModelGraph
from distiller.models import create_model
from distiller.modules import BatchMatmul, Concat, EltwiseAdd, EltwiseMult, Matmul
from distiller.quantization.modularize import modularize, module_name_for_graph_node, reused_modules


def _input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _models():
    return [
        pytest.param(lambda: torchvision.models.resnet18(), (1, 3, 64, 64), id="resnet18"),
        pytest.param(lambda: torchvision.models.mobilenet_v2(), (1, 3, 64, 64), id="mobilenet_v2"),
        pytest.param(
            lambda: torchvision.models.googlenet(aux_logits=False, init_weights=False), (1, 3, 64, 64), id="googlenet"
        ),
        pytest.param(lambda: create_model("resnet20_cifar"), (2, 3, 32, 32), id="resnet20_cifar"),
        pytest.param(lambda: create_model("simplenet_cifar"), (2, 3, 32, 32), id="simplenet_cifar"),
    ]


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = _input(1, 3, 64, 64)
    return model, x, modularize(model, x)


@pytest.mark.parametrize(("build", "shape"), _models())
def test_same_function_and_every_module_called_once(build, shape):
    torch.manual_seed(0)
    model = build().eval()
    x = _input(*shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gm = modularize(model, x)
    assert isinstance(gm, fx.GraphModule)
    with torch.no_grad():
        assert torch.equal(model(x), gm(x))
    assert reused_modules(gm) == {}
    # the original is untouched and shares no module with the result
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not {id(m) for m in model.modules()} & {id(m) for m in gm.modules()}


def test_resnet18_residual_adds_and_second_relu_calls_become_modules(resnet18):
    model, x, gm = resnet18
    assert reused_modules(model, x) == {f"layer{i}.{j}.relu": 2 for i in range(1, 5) for j in range(2)}
    add = gm.get_submodule("layer1.0.add")
    assert isinstance(add, EltwiseAdd)
    first, second = gm.get_submodule("layer1.0.relu"), gm.get_submodule("layer1.0.relu#1")
    assert isinstance(second, nn.ReLU) and second is not first and second.inplace == first.inplace
    calls = [str(n.target) for n in gm.graph.nodes if n.op == "call_module"]
    assert calls[calls.index("layer1.0.bn2") :][:3] == ["layer1.0.bn2", "layer1.0.add", "layer1.0.relu#1"]
    # flatten does not change values: it stays functional
    assert [n.target for n in gm.graph.nodes if n.op in ("call_function", "call_method")] == [torch.flatten]
    assert module_name_for_graph_node(gm, "layer1.0.relu#1") == "layer1.0.relu#1"


def test_module_names_are_the_model_graph_names(resnet18):
    model, x, gm = resnet18
    original = ModelGraph(model, x)
    for graph_name, module_name in gm.graph_node_modules.items():
        assert graph_name == module_name
        assert graph_name in original.nodes
    assert original["layer1.0.add"].op_type == "add"  # the op the module replaced
    result = ModelGraph(gm, x)
    assert "layer1.0.add" in result.nodes and "layer1.0.relu#1" in result.nodes
    assert result.successors("layer1.0.bn2") == ["layer1.0.add"]


class _AllOps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        c = self.conv(x)
        acts = [
            F.relu(c),
            torch.relu(c),
            c.relu(),
            F.relu6(c),
            F.hardtanh(c, 0.0, 6.0),
            F.hardtanh(c, -2.0, 2.0),
            torch.sigmoid(c),
            F.sigmoid(c),
            c.sigmoid(),
            torch.tanh(c),
            F.hardswish(c),
            F.hardsigmoid(c),
            F.silu(c),
            F.gelu(c, approximate="tanh"),
        ]
        a = torch.cat(acts, dim=1)
        p = torch.cat([F.avg_pool2d(a, 2), F.max_pool2d(a, kernel_size=3, stride=2, padding=1)], 1)
        p = p + F.adaptive_avg_pool2d(p, 4)
        p = torch.add(p, p * p)
        p = p * 0.5 + 1  # scalar arithmetic stays functional
        m = p.flatten(2)  # (N, C, 16)
        m = torch.matmul(m, m.transpose(1, 2)) + (m @ m.transpose(1, 2))
        m = torch.bmm(m[:, :8, :8], self.fc(m[:, :8, :8]))
        pooled = F.max_pool1d(m, 2) + F.adaptive_avg_pool1d(m, 4)
        return pooled.add(pooled.mul(pooled))


def test_every_listed_op_becomes_its_module():
    model = _AllOps().eval()
    x = _input(2, 3, 8, 8)
    gm = modularize(model, x)
    with torch.no_grad():
        assert torch.equal(model(x), gm(x))
    created = {name: type(gm.get_submodule(name)) for name in gm.graph_node_modules.values()}
    expected = {
        "relu": nn.ReLU,
        "relu#1": nn.ReLU,
        "relu#2": nn.ReLU,
        "relu6": nn.ReLU6,
        "hardtanh": nn.ReLU6,
        "hardtanh#1": nn.Hardtanh,
        "sigmoid": nn.Sigmoid,
        "sigmoid#1": nn.Sigmoid,
        "sigmoid#2": nn.Sigmoid,
        "tanh": nn.Tanh,
        "hardswish": nn.Hardswish,
        "hardsigmoid": nn.Hardsigmoid,
        "silu": nn.SiLU,
        "gelu": nn.GELU,
        "cat": Concat,
        "avg_pool2d": nn.AvgPool2d,
        "max_pool2d": nn.MaxPool2d,
        "cat#1": Concat,
        "adaptive_avg_pool2d": nn.AdaptiveAvgPool2d,
        "add": EltwiseAdd,
        "mul": EltwiseMult,
        "add#1": EltwiseAdd,
        "matmul": Matmul,
        "matmul#1": Matmul,
        "add#3": EltwiseAdd,
        "bmm": BatchMatmul,
        "max_pool1d": nn.MaxPool1d,
        "adaptive_avg_pool1d": nn.AdaptiveAvgPool1d,
        "add#4": EltwiseAdd,
        "mul#2": EltwiseMult,
        "add#5": EltwiseAdd,
    }
    for name, cls in expected.items():
        assert created[name] is cls, name
    assert gm.get_submodule("cat").dim == 1
    assert gm.get_submodule("gelu").approximate == "tanh"
    assert gm.get_submodule("hardtanh#1").min_val == -2.0
    pool = gm.get_submodule("max_pool2d")
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    remaining = {n.target for n in gm.graph.nodes if n.op in ("call_function", "call_method")}
    assert remaining == {operator.mul, operator.add, operator.getitem, "flatten", "transpose"}
    # every new module is named as ModelGraph names the op it replaced
    graph = ModelGraph(model, x)
    assert all(name in graph.nodes and graph[name].kind != "module" for name in expected)


class _Inplace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.act(x)
        z = y.add_(x)  # y is also used below: the update must stay in place
        c = self.conv(x).add_(x)  # a fresh, single-use conv output: out of place is the same
        return z + y + c + torch.relu_(c)


def test_inplace_updates_stay_in_place_only_where_observable():
    model = _Inplace().eval()
    x = _input(1, 3, 4, 4)
    gm = modularize(model, x)
    with torch.no_grad():
        assert torch.equal(model(x.clone()), gm(x.clone()))
    assert gm.get_submodule("add_").inplace is True
    assert gm.get_submodule("add_#1").inplace is False
    assert gm.get_submodule("relu_").inplace is True


class _Twice(nn.Module):
    """A container called twice and a functional op that takes a module's name first."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.relu = nn.ReLU()

    def forward(self, x):
        y = F.relu(x)  # ModelGraph calls this "relu"; the module self.relu then becomes "relu#1"
        y = self.block(y) + self.block(x)
        return self.relu(y)


def test_name_clashes_and_repeated_containers():
    model = _Twice().eval()
    x = _input(1, 4, 6, 6)
    gm = modularize(model, x)
    with torch.no_grad():
        assert torch.equal(model(x), gm(x))
    graph_names = set(ModelGraph(model, x).nodes)
    mapping = gm.graph_node_modules
    assert set(mapping) <= graph_names
    assert mapping["relu#1"] == "relu"  # the module keeps its name
    assert isinstance(gm.get_submodule(mapping["relu"]), nn.ReLU) and mapping["relu"] != "relu"
    assert module_name_for_graph_node(gm, "relu") == mapping["relu"]
    copies = [n for n in mapping if n.startswith("block.0#")]
    assert copies and gm.get_submodule(mapping[copies[0]]) is not gm.get_submodule("block.0")
    # in the result, every module call is named after its module
    result = ModelGraph(gm, x)
    assert all(name in result.nodes for name in mapping.values())
    with pytest.raises(GraphError, match="not run by a module"):
        module_name_for_graph_node(gm, "nothing")


def test_user_attributes_are_kept():
    model = create_model("resnet20_cifar").eval()
    gm = modularize(model, _input(1, 3, 32, 32))
    assert gm.arch == "resnet20_cifar" and gm.dataset == "cifar10"
    assert tuple(gm.input_shape) == (3, 32, 32) and gm.num_classes == 10
    assert type(gm).__name__ == "ResNetCifar"


def test_data_parallel_is_unwrapped():
    model = create_model("simplenet_cifar").eval()
    x = _input(1, 3, 32, 32)
    gm = modularize(nn.DataParallel(model), x)
    with torch.no_grad():
        assert torch.equal(model(x), gm(x))
    assert "conv1" in dict(gm.named_modules())


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


def test_untraceable_models_raise_graph_error():
    with pytest.raises(GraphError, match="cannot trace _Untraceable"):
        modularize(_Untraceable(), _input(1, 4))
    with pytest.raises(GraphError, match="example input"):
        modularize(create_model("simplenet_cifar"), _input(1, 3, 8, 8))
