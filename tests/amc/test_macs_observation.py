"""The AMC step table, the closed MAC formula and the 13-feature observation on known models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distiller.amc.config import AMCConfig
from distiller.amc.macs import Footprint, LayerCost, MacModel
from distiller.amc.observation import FEATURES, normalize_columns, observation, static_features
from distiller.amc.steps import analyze_network
from distiller.errors import ConfigError
from distiller.models import create_model
from distiller.summary import compute_summary


def _env(arch, dataset, batches, **config):
    from distiller.amc.environment import AMCEnv

    torch.manual_seed(0)
    model = create_model(arch, dataset)
    return AMCEnv(model, batches(model.input_shape), AMCConfig(**config))


def test_plain20_steps_are_its_convolutions_in_graph_order():
    network = analyze_network(create_model("plain20_cifar", "cifar10"), pattern="filters")
    layers = [s.layer for s in network.steps]
    assert layers[0] == "conv1" and layers[1] == "layer1.0.conv1" and layers[-1] == "layer3.2.conv2"
    assert len(layers) == 19  # every conv; the classifier's outputs reach the model output
    first, stage3 = network.steps[0], network.steps[13]
    assert (first.kind, first.n, first.c, first.h, first.w, first.stride, first.k) == ("conv", 16, 3, 32, 32, 1, 3)
    assert (stage3.layer, stage3.n, stage3.c, stage3.h, stage3.stride) == ("layer3.0.conv1", 64, 32, 16, 2)
    # conv1's group occupies conv1 (filters) and layer1.0.conv1 (input channels)
    assert first.macs == 16 * 3 * 9 * 32 * 32 + 16 * 16 * 9 * 32 * 32
    assert first.weights == 16 * 3 * 9 + 16 * 16 * 9


def test_channels_pattern_describes_the_consumer():
    network = analyze_network(create_model("plain20_cifar", "cifar10"), pattern="channels")
    last = network.steps[-1]
    assert (last.layer, last.kind, last.n, last.c, last.h, last.w, last.k, last.stride) == (
        "fc",
        "linear",
        10,
        64,
        1,
        1,
        1,
        0,
    )


def test_resnet20_residual_stages_are_one_step_each():
    network = analyze_network(create_model("resnet20_cifar", "cifar10"))
    assert len(network.steps) == 12
    stem = network.steps[0]
    assert stem.layer == "conv1" and stem.num_channels == 16
    # the stage-1 stream: the stem and three conv2 write it; three conv1, layer2.0.conv1 and the
    # layer2.0 shortcut read it
    assert len(network.mac_model.footprints[0]) == 9


def test_cfg_layers_restrict_and_unknown_layers_are_refused():
    model = create_model("plain20_cifar", "cifar10")
    network = analyze_network(model, layers=["module.layer1.0.conv1", "layer3.2.conv2"])
    assert [s.layer for s in network.steps] == ["layer1.0.conv1", "layer3.2.conv2"]
    with pytest.raises(ConfigError, match="layer9"):
        analyze_network(model, layers=["layer9.conv"])


@pytest.mark.parametrize("arch", ["plain20_cifar", "resnet20_cifar"])
def test_closed_mac_formula_equals_compute_summary_of_the_thinned_network(arch, random_batches):
    env = _env(arch, "cifar10", random_batches, protocol="accuracy-guaranteed")
    assert env.dense_macs == compute_summary(env.work).attrs["total_macs"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        env.reset(seed=0)
        for _ in range(env.num_steps):
            env.step(rng.uniform(-1, 1, 1).astype(np.float32))
        thinned = env.thinned_copy()
        assert env.mac_model.macs(env._removed) == compute_summary(thinned).attrs["total_macs"]


def test_mac_model_is_bilinear_in_rows_and_columns():
    model = MacModel(
        (LayerCost("a", "a.weight", 1000, 10, 10), LayerCost("b", "b.weight", 400, 4, 10)),
        ((Footprint(0, 0, 1), Footprint(1, 1, 1)), (Footprint(1, 0, 2),)),
    )
    assert model.dense_macs == 1400
    assert model.layer_macs([5, 0]) == [500, 200]  # a loses half its rows, b half its columns
    assert model.layer_macs([5, 1]) == [500, 100]  # b also loses 2 of its 4 rows
    assert model.macs([0, 0]) == 1400


def test_normalization_is_min_max_per_column():
    table = np.array([[0, 2, 5], [1, 2, 15], [2, 2, 10]], dtype=float)
    out = normalize_columns(table)
    np.testing.assert_allclose(out, [[0, 0, 0], [0.5, 0, 1], [1, 0, 0.5]])


def test_observation_has_13_features_in_unit_range():
    network = analyze_network(create_model("plain20_cifar", "cifar10"))
    static = normalize_columns(static_features(network.steps))
    assert static.shape == (19, 10) and static.min() == 0.0 and static.max() == 1.0
    assert static[:, 0].tolist() == pytest.approx([t / 18 for t in range(19)])  # t
    obs = observation(static[3], 0.25, 0.5, 0.75)
    assert obs.shape == (len(FEATURES),) == (13,) and obs.dtype == np.float32
    assert obs[-3:].tolist() == [0.25, 0.5, 0.75]


def test_environment_observation_tracks_reduced_rest_and_previous_action(random_batches):
    env = _env("plain20_cifar", "cifar10", random_batches, protocol="accuracy-guaranteed")
    obs, _ = env.reset(seed=0)
    later = env.mac_model.macs_of(env._later_layers[0], [0] * env.num_steps)
    assert obs[10] == 0.0 and obs[12] == 0.0
    assert obs[11] == pytest.approx(later / env.dense_macs)
    obs, *_ = env.step(np.array([1.0], dtype=np.float32))  # the most the range allows: 0.8 -> 12 of 16
    assert obs[12] == pytest.approx(12 / 16)
    reduced = (env.dense_macs - env.mac_model.macs(env._removed)) / env.dense_macs
    assert obs[10] == pytest.approx(reduced) and reduced > 0
