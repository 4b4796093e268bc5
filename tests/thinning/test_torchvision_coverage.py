"""Every torchvision classification model: 50% coupled channel masks on every prunable group, thinned,
computes what the masked model computed (the issue's coverage criterion; ``benchmarks/thinning_coverage.py``
is the same sweep with timings, capture checks and Torch-Pruning alongside).

A model passes when at least 90% of the conv/linear layers its forward uses (``nn.MultiheadAttention``
counted as one; the final classifier excepted) belong to a group that lost channels (depthwise
convolutions belong as passive members), its parameters drop by at least 30%, and the thinned output
equals the masked output within 1e-5 of the output's largest magnitude. Minutes per large model: ``slow``.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from distiller.graph import ModelGraph
from distiller.graph.coupling import channel_coupling
from distiller.pruning.coupled import coupled_group_masks
from distiller.thinning.api import thin_model

MODELS = torchvision.models.list_models(module=torchvision.models)
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.MultiheadAttention)

# Known failures, each with its cause (measured by benchmarks/thinning_coverage.py; torchvision 0.29.1).
_CONVNEXT = ("LayerNorm over channels (nn.LayerNorm after a permute, F.layer_norm in LayerNorm2d) and the "
             "layer_scale parameter multiply block the residual stream: stem, downsampling and depthwise convs stay")
_SWIN = ("LayerNorm blocks the residual stream, and the attention reads its qkv/proj weights functionally "
         "(shifted_window_attention), outside any channel group")
_VIT = ("the residual stream is blocked by the pos_embedding add and class_token cat (parameters, not channels), "
        "and nn.MultiheadAttention is opaque: patch embedding and attention stay")
KNOWN_FAILURES: dict[str, str] = {
    **dict.fromkeys(["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"], _CONVNEXT),
    **dict.fromkeys(["swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"], _SWIN),
    **dict.fromkeys(["vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"], _VIT),
    "maxvit_t": "einsum (relative-position attention) and LayerNorm are opaque: the attention projections stay",
}


def randomize(model: nn.Module, generator: torch.Generator) -> None:
    """Random norm statistics and affine parameters, and random values for constant-initialized
    parameters (zero heads, zero biases, 1e-6 layer scales): else the check proves little."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.GroupNorm | nn.LayerNorm):
                if getattr(m, "running_mean", None) is not None:
                    m.running_mean.normal_(generator=generator)
                    m.running_var.uniform_(0.5, 2.0, generator=generator)
                for p in (m.weight, m.bias):
                    if p is not None:
                        p.normal_(generator=generator)
        for p in model.parameters():
            if p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                p.normal_(0.0, 0.1 if p.numel() == p.shape[0] else p[0].numel() ** -0.5, generator=generator)


def check(name: str, fraction: float = 0.5) -> tuple[float, float, float]:
    """(coverage, parameter reduction, max relative output error) of thinning ``name``."""
    model = torchvision.models.get_model(name, weights=None).eval()
    generator = torch.Generator().manual_seed(0)
    size = 299 if name == "inception_v3" else 224
    example, probe = torch.randn(2, 1, 3, size, size, generator=generator)
    randomize(model, generator)
    graph = ModelGraph(model, example, allow_fallback=False)
    coupling = channel_coupling(graph)
    tensors = {n: p.detach() for n, p in model.named_parameters()}
    masks = coupled_group_masks(coupling.prunable, tensors, fraction, criterion="l1")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    params = sum(p.numel() for p in model.parameters())
    with torch.inference_mode():
        reference = model(probe)
    report = thin_model(model, masks, example=example)
    with torch.inference_mode():
        error = float((model(probe) - reference).abs().max() / reference.abs().max())
    reduction = 1 - sum(p.numel() for p in model.parameters()) / params
    # Layers the forward uses: called, or with weights read directly (Swin: F.linear(x, qkv.weight)).
    used = [n.module_name if n.kind == "module" else str(n.fx_node.target).rpartition(".")[0]
            for n in graph.nodes.values() if n.kind in ("module", "constant")]
    modules = dict(model.named_modules())
    layers = [n for n in dict.fromkeys(used) if isinstance(modules.get(n), WEIGHT_LAYERS)]
    layers = layers[:-1]  # the final classifier is the last conv/linear of every torchvision classifier
    pruned = {m.layer for i in report.removed for m in coupling.groups[i].members}
    coverage = sum(layer in pruned for layer in layers) / len(layers)
    return coverage, reduction, error


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_torchvision_model_thins_exactly(name: str) -> None:
    try:
        coverage, reduction, error = check(name)
        failures = [f"coverage {coverage:.0%}"] if coverage < 0.9 else []
        failures += [f"params -{reduction:.0%}"] if reduction < 0.3 else []
        failures += [f"max relative error {error:.1e}"] if not error <= 1e-5 else []
    except Exception as e:  # an exception in coupling or thinning is a failure like the others
        if name not in KNOWN_FAILURES:
            raise
        failures = [f"{type(e).__name__}: {e}"]
    if failures and name in KNOWN_FAILURES:
        pytest.xfail(f"{KNOWN_FAILURES[name]} ({'; '.join(failures)[:200]})")
    assert not failures, f"{name}: {'; '.join(failures)}"
