"""Greedy per-layer clip-mode search: picks the best candidate per layer, resumes, keeps float16 layers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from distiller.data.digits import _arrays
from distiller.errors import ConfigError, QuantizationError
from distiller.quantization import PostTrainLinearQuantizer, calibrate
from distiller.quantization.greedy_search import CLIP_MODES, layers_quant_order, ptq_greedy_search
from distiller.quantization.wrappers import FPWrapper

BASE = {"bits_activations": 4, "bits_parameters": 4}


class TwoLayer(nn.Module):
    def __init__(self, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.act = act()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x.flatten(1))))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _trained(act: type[nn.Module]):
    torch.manual_seed(0)
    images, labels, is_test = _arrays()
    x, y = images[~is_test], labels[~is_test]
    model = TwoLayer(act)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(3):
        for i in range(0, len(x), 64):
            loss = nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    batches = [(x[i : i + 128], y[i : i + 128]) for i in range(0, 256, 128)]
    stats = calibrate(model, batches, x[:1])
    calls = []

    def eval_fn(m: nn.Module) -> float:
        calls.append(1)
        with torch.no_grad():
            return float(nn.functional.cross_entropy(m(batches[0][0]), batches[0][1]))

    return model, stats, eval_fn, x[:1], calls


@pytest.fixture(scope="module")
def mlp():
    return _trained(nn.ReLU)


def _score(mlp, overrides):
    model, stats, eval_fn, example, _ = mlp
    q = PostTrainLinearQuantizer(
        copy.deepcopy(model), model_activation_stats=copy.deepcopy(stats), overrides=overrides, **BASE
    )
    return eval_fn(q.prepare_model(example))


def test_each_layer_gets_the_best_of_its_candidates(mlp):
    model, stats, eval_fn, example, _ = mlp
    progress = []
    quantized, chosen = ptq_greedy_search(
        model, example, eval_fn, stats, BASE, higher_is_better=False, on_layer_done=progress.append
    )
    assert list(chosen) == ["fc1", "fc2"]
    # brute force, layer by layer, with the earlier choice fixed
    scores1 = {m: _score(mlp, {"fc1": {"clip_acts": m}}) for m in CLIP_MODES}
    assert chosen["fc1"] == {"clip_acts": min(scores1, key=scores1.get)}
    scores2 = {m: _score(mlp, {"fc1": chosen["fc1"], "fc2": {"clip_acts": m}}) for m in CLIP_MODES}
    assert chosen["fc2"] == {"clip_acts": min(scores2, key=scores2.get)}
    assert eval_fn(quantized) == pytest.approx(min(scores2.values()))
    assert [list(p) for p in progress] == [["fc1"], ["fc1", "fc2"]]


def test_resume_skips_the_layers_already_chosen(mlp):
    model, stats, eval_fn, example, calls = mlp
    calls.clear()
    _, chosen = ptq_greedy_search(
        model, example, eval_fn, stats, BASE, higher_is_better=False, resume_overrides={"fc1": {"clip_acts": "AVG"}}
    )
    assert chosen["fc1"] == {"clip_acts": "AVG"}
    assert len(calls) == len(CLIP_MODES) + 1  # fc2's candidates and the final model
    scores2 = {m: _score(mlp, {"fc1": {"clip_acts": "AVG"}, "fc2": {"clip_acts": m}}) for m in CLIP_MODES}
    assert chosen["fc2"] == {"clip_acts": min(scores2, key=scores2.get)}


def test_base_overrides_stay_in_the_layer_override(mlp):
    model, stats, eval_fn, example, _ = mlp
    base = {**BASE, "overrides": {"fc2": {"bits_activations": 8}}}
    quantized, chosen = ptq_greedy_search(model, example, eval_fn, stats, base, layers=["fc2"])
    assert list(chosen) == ["fc2"]
    assert chosen["fc2"]["bits_activations"] == 8 and chosen["fc2"]["clip_acts"] in CLIP_MODES
    assert quantized.fc2.output_settings.num_bits == 8


def test_tanh_is_kept_in_float16():
    model, stats, eval_fn, example, _ = _trained(nn.Tanh)
    quantized, chosen = ptq_greedy_search(model, example, eval_fn, stats, BASE, higher_is_better=False)
    assert list(chosen) == ["fc1", "act", "fc2"]
    assert chosen["act"] == {"fpq_module": 16}
    assert isinstance(quantized.act, FPWrapper) and quantized.act.precision == 16


def test_order_and_errors(mlp):
    model, stats, eval_fn, example, _ = mlp
    assert layers_quant_order(model, example) == ["fc1", "act", "fc2"]
    with pytest.raises(QuantizationError, match="calibrat"):
        ptq_greedy_search(model, example, eval_fn, None, BASE)
    with pytest.raises(ConfigError, match="not both"):
        ptq_greedy_search(model, example, eval_fn, stats, {**BASE, "model_activation_stats": stats})
    with pytest.raises(ConfigError, match="no layer"):
        ptq_greedy_search(model, example, eval_fn, stats, BASE, layers=["fc9"])
    with pytest.raises(ConfigError, match="clip mode"):
        ptq_greedy_search(model, example, eval_fn, stats, BASE, clip_modes=["SOMETIMES"])
