"""The original's thresholding tests (``tests/test_thresholding.py``), re-expressed.

Same input tensors and the same expected binary maps and masks; CPU instead of CUDA.
"""

from __future__ import annotations

import pytest
import torch

from distiller.errors import ConfigError
from distiller.sparsity import metrics
from distiller.sparsity.norms import channels_norm, kernels_lp_norm, l1_norm, l2_norm, max_norm, norm_from_name
from distiller.sparsity.thresholding import (
    create_mask_level_criterion,
    create_mask_sensitivity_criterion,
    create_mask_threshold_criterion,
    expand_binary_map,
    group_threshold_binary_map,
    group_threshold_mask,
    mask_tensor,
    threshold_mask,
)

# The original's 4-D test tensor (2 filters x 3 channels x 3 x 3). Its kernel L1 norms are
# [6.5997, 7.7756, 5.8073, 8.4522, 5.9498, 6.4908]; filter L2 norms [4.5039, 5.2156];
# channel L2 norms [4.3593, 3.6394, 3.9037]; channel mean-L1 [0.8362, 0.7625, 0.6832].
W4 = torch.tensor(
    [
        [
            [[-1.2982, 0.7574, 0.7962], [-0.6695, 1.5907, 0.2659], [0.1423, 0.3165, -0.7629]],
            [[-0.5480, -1.2718, 0.8286], [-0.6427, 0.3814, -0.7988], [1.0346, 1.3023, -0.9674]],
            [[-0.7951, 1.8784, -0.5654], [0.0456, -0.2849, -0.3332], [-0.2367, 0.7467, 0.9212]],
        ],
        [
            [[1.3672, 0.2993, -0.0619], [1.8156, 0.7599, 0.1815], [0.4136, 1.8316, 1.7214]],
            [[0.5125, -1.5329, 0.9257], [0.9200, 0.4376, 0.5743], [-0.0097, 0.9473, -0.0899]],
            [[0.2372, 2.4369, -0.3410], [-1.0595, 0.8056, -0.0357], [-1.0105, -0.1451, -0.4194]],
        ],
    ]
)
W2 = torch.arange(1.0, 13.0).reshape(4, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]


def _kernel_mask(kernel_map: list[list[float]]) -> torch.Tensor:
    """A 2x3x3x3 mask whose (filter, channel) kernels are all ``kernel_map[f][c]``."""
    return torch.tensor(kernel_map).view(2, 3, 1, 1).expand(2, 3, 3, 3)


def test_norm_names():
    assert (str(l1_norm), str(l2_norm), str(max_norm)) == ("L1", "L2", "Max")
    assert norm_from_name("max") is max_norm
    with pytest.raises(ConfigError):
        norm_from_name("L3")


def test_reference_norms():
    assert torch.allclose(
        kernels_lp_norm(W4, p=1), torch.tensor([6.5997, 7.7756, 5.8073, 8.4522, 5.9498, 6.4908]), atol=1e-3
    )
    assert torch.allclose(channels_norm(W4, l2_norm), torch.tensor([4.3593, 3.6394, 3.9037]), atol=1e-3)
    assert torch.allclose(
        channels_norm(W4, l1_norm, length_normalized=True), torch.tensor([0.8362, 0.7625, 0.6832]), atol=1e-3
    )


def test_threshold_mask_one_element_below():
    a = torch.ones(3, 64, 32, 32)
    a[1, 4, 17, 31] = 0.2
    mask = create_mask_threshold_criterion(a, threshold=0.3)
    assert mask.sum().item() == a.numel() - 1
    assert mask[1, 4, 17, 31] == 0
    assert metrics.sparsity(mask) == pytest.approx(1 / a.numel())
    assert torch.equal(threshold_mask(a, 0.3), mask)


def test_level_criterion():
    t = torch.randn(3, 64, 32, 32, generator=torch.Generator().manual_seed(0))
    assert metrics.sparsity(create_mask_level_criterion(t, 0.3)) == pytest.approx(0.3, abs=1e-4)
    ones = torch.ones(3, 64, 32, 32)  # the original failed here (ties); ours is exact
    assert int((create_mask_level_criterion(ones, 0.3) == 0).sum()) == round(0.3 * ones.numel())


def test_sensitivity_criterion():
    t = torch.randn(3, 64, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = create_mask_sensitivity_criterion(t, 1.0)
    assert metrics.sparsity(mask) == pytest.approx(0.6827, abs=0.005)
    # The std is measured once and cached on the tensor, as in the original.
    std = t.stddev
    t.mul_(mask)
    create_mask_sensitivity_criterion(t, 1.0)
    assert t.stddev == std


def test_kernel_thresholding():
    mask, binary_map = group_threshold_mask(W4, "2D", 6, "L1")
    assert binary_map.shape == (6,)
    assert binary_map.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert torch.equal(mask, _kernel_mask([[1, 1, 0], [1, 0, 1]]))


def test_filter_thresholding():
    mask, binary_map = group_threshold_mask(W4, "3D", 4.7, "L2")
    assert binary_map.tolist() == [0.0, 1.0]
    assert torch.equal(mask, _kernel_mask([[0, 0, 0], [1, 1, 1]]))
    assert torch.equal(group_threshold_mask(W4, "Filters", 4.7, "L2")[0], mask)


def test_channel_thresholding_l2():
    mask, binary_map = group_threshold_mask(W4, "Channels", 3.7, "L2")
    assert binary_map.tolist() == [1.0, 0.0, 1.0]
    assert torch.equal(mask, _kernel_mask([[1, 0, 1], [1, 0, 1]]))


def test_channel_thresholding_mean_l1():
    mask, binary_map = group_threshold_mask(W4, "Channels", 0.7, "Mean_L1")
    assert binary_map.tolist() == [1.0, 1.0, 0.0]
    assert torch.equal(mask, _kernel_mask([[1, 1, 0], [1, 1, 0]]))
    assert torch.equal(group_threshold_mask(W4, "Channels", 0.7, "Mean_Abs")[1], binary_map)


def test_row_thresholding():
    mask, binary_map = group_threshold_mask(W2, "Rows", 7, "Max")
    assert binary_map.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert mask.tolist() == [[0.0] * 3, [0.0] * 3, [1.0] * 3, [1.0] * 3]


def test_col_thresholding():
    mask, _ = group_threshold_mask(W2, "Cols", 11, "Max")
    assert mask.tolist() == [[0.0, 0.0, 1.0]] * 4


def test_binary_map_reuse_and_expansion():
    """A leader's map applied to another tensor (group_dependency: Leader)."""
    binary_map = group_threshold_binary_map(W4, "Filters", 4.7, "L2")
    other = torch.randn(2, 5, 1, 1)
    mask, same = group_threshold_mask(other, "Filters", 123.0, "L2", binary_map=binary_map)
    assert same is binary_map and mask.flatten(1).amax(1).tolist() == [0.0, 1.0]
    cols, _ = expand_binary_map(W2, "Channels", torch.tensor([1.0, 0.0, 1.0]))  # Channels of 2-D = Cols
    assert cols.tolist() == [[1.0, 0.0, 1.0]] * 4
    layer, _ = expand_binary_map(W4, "4D", torch.tensor([0.0]))
    assert torch.count_nonzero(layer) == 0
    with pytest.raises(ConfigError, match="does not fit"):
        expand_binary_map(W4, "Filters", torch.ones(3))


def test_unknown_criteria_and_group():
    with pytest.raises(ConfigError, match="Did you mean 'Max'"):
        group_threshold_binary_map(W4, "3D", 1.0, "Maxx")
    with pytest.raises(ConfigError, match="Unknown granularity"):
        group_threshold_binary_map(W4, "Flters", 1.0, "Max")


def test_mask_tensor():
    t = torch.arange(1.0, 5.0)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    out = mask_tensor(t.clone(), mask, inplace=False)
    assert out.tolist() == [1.0, 0.0, 3.0, 0.0]
    same = mask_tensor(t, mask)
    assert same is t and t.tolist() == [1.0, 0.0, 3.0, 0.0]
    assert mask_tensor(t, None) is t
    with pytest.raises(ConfigError):
        mask_tensor(t, torch.ones(3))
