"""L1Regularizer: strength * sum|w|, and the |w| > strength one-shot mask."""

from __future__ import annotations

import pytest
import torch

from distiller.regularization import L1Regularizer
from distiller.sparsity import MaskSet


def test_loss_equals_hand_computed(net):
    reg = L1Regularizer("l1", net, {"conv.weight": 0.01, "bn.weight": 0.5})
    conv_expected = 0.01 * sum(abs(v) for v in net.conv.weight.detach().flatten().tolist())
    bn_expected = 0.5 * (0.5 + 0.01 + 2.0)
    assert reg.loss(net.conv.weight, "conv.weight", 0.0).item() == pytest.approx(conv_expected, rel=1e-12)
    assert reg.loss(net.bn.weight, "bn.weight", 1.0).item() == pytest.approx(1.0 + bn_expected, rel=1e-12)


def test_threshold_sets_one_shot_elementwise_mask(net):
    masks = MaskSet.for_model(net)
    reg = L1Regularizer("l1", net, {"bn.weight": 0.1}, threshold_criteria="Max")
    reg.threshold(net.bn.weight, "bn.weight", masks)
    masker = masks["bn.weight"]
    assert masker.is_regularization_mask
    torch.testing.assert_close(masker.mask, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    masks.apply(net)
    torch.testing.assert_close(net.bn.weight.detach(), torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64))
    assert masker.mask is None  # one-shot: discarded after one application


def test_threshold_is_strict(net):
    masks = MaskSet.for_model(net)
    reg = L1Regularizer("l1", net, {"bn.weight": 0.5}, threshold_criteria="Max")
    reg.threshold(net.bn.weight, "bn.weight", masks)
    torch.testing.assert_close(masks["bn.weight"].mask, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_no_threshold_without_criteria_or_for_other_params(net):
    masks = MaskSet.for_model(net)
    L1Regularizer("l1", net, {"bn.weight": 0.1}).threshold(net.bn.weight, "bn.weight", masks)
    assert masks["bn.weight"].mask is None
    reg = L1Regularizer("l1", net, {"bn.weight": 0.1}, threshold_criteria="Max")
    reg.threshold(net.conv.weight, "conv.weight", masks)
    assert masks["conv.weight"].mask is None and not masks["conv.weight"].is_regularization_mask
