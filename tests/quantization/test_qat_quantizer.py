"""Quantization-aware training mechanics of the base ``Quantizer``: float copies, parameters to
quantize, new optimizer groups, deployment state, shared modules, override checks."""

from __future__ import annotations

import copy
import re
import warnings

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError, QuantizationError
from distiller.quantization import DorefaQuantizer, PACTQuantizer, deploy_state_dict, strip_fp_copy
from distiller.quantization.quantizer import ParamToQuant, Quantizer, add_param_groups, has_fp_copy


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(x.flatten(1))


def _grid(t: torch.Tensor) -> torch.Tensor:
    return torch.round(t.detach() * 16) / 16


def _halve(param_fp: torch.Tensor, meta: ParamToQuant) -> torch.Tensor:
    """A toy quantization function: round(16x)/16 with a straight-through gradient."""
    return param_fp + (_grid(param_fp) - param_fp).detach()


class _HalvingQuantizer(Quantizer):
    def __init__(self, model: nn.Module, optimizer=None, train_with_fp_copy: bool = True, **kwargs) -> None:  # noqa: ANN001, ANN003
        super().__init__(model, optimizer, 8, 8, None, train_with_fp_copy=train_with_fp_copy, **kwargs)
        self.param_quantization_fn = _halve


def _x() -> torch.Tensor:
    return torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def test_fp_copy_keeps_the_float_parameter_object_and_its_position():
    torch.manual_seed(0)
    model = _Net()
    before = [(n, p) for n, p in model.named_parameters()]
    q = _HalvingQuantizer(model)
    assert q.prepare_model() is model  # in place
    after = list(model.named_parameters())
    assert [n for n, _ in after] == [
        "conv1.float_weight",
        "conv1.bias",
        "conv2.float_weight",
        "conv2.bias",
        "fc.float_weight",
        "fc.bias",
    ]
    assert all(p is p0 for (_, p), (_, p0) in zip(after, before))  # the optimizer's tensors stay valid
    assert isinstance(model.conv1.float_weight, nn.Parameter)
    assert "weight" in model.conv1._buffers and not isinstance(model.conv1.weight, nn.Parameter)
    assert torch.equal(model.conv1.weight, _grid(model.conv1.float_weight))
    assert [(p.module_name, p.fp_attr_name, p.q_attr_name, p.num_bits) for p in q.params_to_quantize] == [
        ("conv1", "float_weight", "weight", 8),
        ("conv2", "float_weight", "weight", 8),
        ("fc", "float_weight", "weight", 8),
    ]  # bits_bias None: biases stay float parameters
    assert has_fp_copy(model)
    assert model.quantizer_metadata["type"] == "_HalvingQuantizer"


def test_gradient_of_the_quantized_weight_reaches_the_float_copy_every_step():
    torch.manual_seed(0)
    model = _Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _HalvingQuantizer(model, opt).prepare_model()
    for _ in range(3):  # a fresh graph every forward: no "backward through the graph a second time"
        opt.zero_grad()
        out = model(_x())
        out.square().sum().backward()
        grad = model.conv2.float_weight.grad
        assert grad is not None and grad.abs().sum() > 0
        opt.step()
    # outside the forward pass the quantized buffer is a plain tensor that follows the float copy
    w = model.conv2.weight
    assert w.grad_fn is None and not w.requires_grad
    model(_x())
    assert torch.equal(model.conv2.weight, _grid(model.conv2.float_weight))


def test_the_forward_pass_uses_the_quantized_weight_with_a_grad_fn_chaining_to_the_float_copy():
    torch.manual_seed(0)
    model = _Net()
    _HalvingQuantizer(model).prepare_model()
    seen = {}

    def look(module, args):  # noqa: ANN001, ANN202
        seen["w"] = module.weight

    model.conv1.register_forward_pre_hook(look)
    model(_x())
    w = seen["w"]
    assert w.grad_fn is not None
    (grad,) = torch.autograd.grad(w.sum(), model.conv1.float_weight)
    assert torch.equal(grad, torch.ones_like(grad))  # straight-through


def test_without_fp_copy_parameters_are_overwritten_by_their_quantized_values():
    torch.manual_seed(0)
    model = _Net()
    q = _HalvingQuantizer(model, train_with_fp_copy=False)
    q.prepare_model()
    assert [n for n, _ in model.named_parameters()][0] == "conv1.weight"
    assert torch.equal(model.conv1.weight, _grid(model.conv1.weight))
    assert not has_fp_copy(model)


def test_model_deep_copies_and_the_copy_quantizes_its_own_weights():
    torch.manual_seed(0)
    model = _Net()
    _HalvingQuantizer(model).prepare_model()
    model(_x())
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.conv1.float_weight.add_(1.0)
    clone(_x())
    assert not torch.equal(clone.conv1.weight, model.conv1.weight)
    assert torch.equal(clone.conv1.weight, _grid(clone.conv1.float_weight))


def test_training_checkpoint_holds_the_float_copy_only_and_the_deploy_state_the_quantized_weight_only():
    torch.manual_seed(0)
    model = _Net()
    _HalvingQuantizer(model).prepare_model()
    state = model.state_dict()
    assert "conv1.float_weight" in state and "conv1.weight" not in state  # issue #486: never both
    deploy = deploy_state_dict(model)
    assert "conv1.weight" in deploy and not any(k.startswith("float_") or ".float_" in k for k in deploy)
    assert list(deploy) == [k.replace("float_", "") for k in state]  # same order, float model's keys
    assert torch.equal(deploy["conv1.weight"], _grid(model.conv1.float_weight))
    plain = _Net()
    plain.load_state_dict(deploy)  # the deployed state is a plain float model's state
    with torch.no_grad():
        assert torch.allclose(plain(_x()), model(_x()))
    assert "conv1.float_weight" in model.state_dict()  # the model itself did not change


def test_strip_fp_copy_leaves_a_plain_model_computing_the_same():
    torch.manual_seed(0)
    model = _Net()
    _HalvingQuantizer(model).prepare_model()
    with torch.no_grad():
        expected = model(_x())
    strip_fp_copy(model)
    assert not has_fp_copy(model)
    assert [n for n, _ in model.named_parameters()] == [
        "conv1.weight",
        "conv1.bias",
        "conv2.weight",
        "conv2.bias",
        "fc.weight",
        "fc.bias",
    ]
    assert isinstance(model.conv1.weight, nn.Parameter)
    assert not model._forward_pre_hooks and not model.conv1._forward_pre_hooks and not model.conv1._forward_hooks
    with torch.no_grad():
        assert torch.equal(model(_x()), expected)
    assert model.quantizer_metadata["fp_copy_stripped"] is True


def test_pact_deploy_checkpoint_is_the_float_models_size():
    torch.manual_seed(0)
    model = _Net()
    float_numel = sum(p.numel() for p in model.state_dict().values())
    PACTQuantizer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), bits_activations=4, bits_weights=4
    ).prepare_model()
    deploy = deploy_state_dict(model)
    # the float model's tensors plus one alpha per replaced ReLU, and nothing twice
    assert sum(v.numel() for v in deploy.values()) == float_numel + 2
    assert sum(v.numel() for v in model.state_dict().values()) == float_numel + 2


def test_learned_parameters_go_to_new_optimizer_groups():
    torch.manual_seed(0)
    model = _Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    q = PACTQuantizer(model, opt, bits_activations=4, bits_weights=4, act_clip_decay=1e-3)
    q.prepare_model()
    assert len(opt.param_groups) == 2
    alpha_group = opt.param_groups[1]
    assert [id(p) for p in alpha_group["params"]] == [id(model.relu1.clip_val), id(model.relu2.clip_val)]
    assert alpha_group["weight_decay"] == 1e-3 and alpha_group["momentum"] == 0.9 and alpha_group["lr"] == 0.1
    assert q.new_param_groups and q.new_param_groups[0]["weight_decay"] == 1e-3


def test_new_groups_follow_the_lr_decay_of_the_first_group():
    p0 = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p0], lr=0.1)
    opt.param_groups[0]["initial_lr"] = 0.1
    opt.param_groups[0]["lr"] = 0.01  # decayed by 10 so far
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    add_param_groups(opt, [{"params": [a]}, {"params": [b], "lr": 0.5}, {"params": [p0]}])
    assert len(opt.param_groups) == 3  # p0 is held already
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["initial_lr"] == 0.1
    assert opt.param_groups[2]["initial_lr"] == 0.5 and opt.param_groups[2]["lr"] == pytest.approx(0.05)


def test_without_an_optimizer_learned_parameters_are_reported():
    model = _Net()
    q = PACTQuantizer(model, None, bits_activations=4, bits_weights=4)
    with pytest.warns(UserWarning, match="no optimizer"):
        q.prepare_model()
    assert [p for g in q.new_param_groups for p in g["params"]] == [model.relu1.clip_val, model.relu2.clip_val]


class _SharedRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        relu = nn.ReLU()
        self.conv = nn.Conv2d(1, 2, 1)
        self.a = nn.Sequential(relu)
        self.b = nn.Sequential(relu)
        self.shared_conv = nn.Sequential(self.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.conv(self.a(x))) + self.shared_conv(x)


def test_shared_modules_are_replaced_and_quantized_once():
    torch.manual_seed(0)
    model = _SharedRelu()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    q = PACTQuantizer(model, opt, bits_activations=4, bits_weights=4, bits_bias=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q.prepare_model()
    assert any("same instance" in str(w.message) for w in caught)
    assert model.a[0] is model.b[0]  # one replacement for one ReLU instance
    assert len(q.clip_params()) == 1 and len(opt.param_groups[1]["params"]) == 1
    assert [(p.module_name, p.q_attr_name) for p in q.params_to_quantize] == [("conv", "weight"), ("conv", "bias")]
    assert len(model.conv._forward_pre_hooks) == 1
    model(torch.randn(1, 1, 2, 2)).sum().backward()
    assert model.conv.float_weight.grad is not None


def test_null_override_bits_keep_layers_float():
    torch.manual_seed(0)
    model = _Net()
    overrides = {"conv1": {"bits_weights": None}, "relu.*": {"bits_activations": None}}
    q = DorefaQuantizer(model, None, bits_activations=2, bits_weights=2, overrides=overrides)
    q.prepare_model()
    assert isinstance(model.conv1.weight, nn.Parameter) and not hasattr(model.conv1, "float_weight")
    assert isinstance(model.relu1, nn.ReLU) and isinstance(model.relu2, nn.ReLU)
    assert [p.module_name for p in q.params_to_quantize] == ["conv2", "fc"]
    assert model.conv2.weight.unique().numel() <= 4


def test_prepare_twice_is_an_error_and_so_is_preparing_a_prepared_model():
    model = _Net()
    q = DorefaQuantizer(model, None, bits_weights=4)
    q.prepare_model()
    with pytest.raises(QuantizationError, match="already"):
        q.prepare_model()
    with pytest.raises(QuantizationError, match="float model"):
        DorefaQuantizer(model, None, bits_weights=4).prepare_model()


def test_override_mistakes_name_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"overrides\.conv1\.bits_weight: .*Did you mean 'bits_weights'"):
        DorefaQuantizer(_Net(), None, overrides={"conv1": {"bits_weight": None}})
    with pytest.raises(ConfigError, match=re.escape(r"overrides.layer1\.0\.conv1: the pattern matches no module")):
        PACTQuantizer(_Net(), None, overrides={r"layer1\.0\.conv1": {"bits_weights": None}})
    with pytest.raises(ConfigError, match=r"overrides\.fc: expected a mapping"):
        PACTQuantizer(_Net(), None, overrides={"fc": 4})
    with pytest.raises(ConfigError, match="bits_weights"):
        PACTQuantizer(_Net(), None, bits_weights=0)
    # a PACT per-layer setting is accepted
    net = _Net()
    PACTQuantizer(
        net, torch.optim.SGD(net.parameters(), lr=0.1), overrides={"relu1": {"act_clip_init_val": 2.0}}
    ).prepare_model()
    assert net.relu1.clip_val.item() == 2.0 and net.relu2.clip_val.item() == 8.0


def test_quantizer_state_records_preparation_and_rejects_another_quantizer_type():
    q = PACTQuantizer(_Net(), None, bits_activations=4, bits_weights=4)
    assert q.state_dict() == {"prepared": False, "type": "PACTQuantizer"}
    with pytest.raises(QuantizationError, match="DorefaQuantizer"):
        q.load_state_dict({"prepared": True, "type": "DorefaQuantizer"})
