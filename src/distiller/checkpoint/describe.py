"""What a checkpoint holds, as text (``distiller inspect CKPT``; the original's ``inspect_ckpt.py``).

Reading goes through :func:`read_checkpoint`, so inspecting an untrusted file is as safe as loading it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from distiller.checkpoint.read import read_checkpoint
from distiller.thinning.plan import ThinningPlan


def _sparsity(t: torch.Tensor) -> float:
    return 100.0 * (1.0 - torch.count_nonzero(t).item() / t.numel()) if t.numel() else 0.0


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return (
            "{"
            + ", ".join(f"{k}: {_short(v)}" for k, v in list(value.items())[:8])
            + (", ...}" if len(value) > 8 else "}")
        )
    if isinstance(value, list | tuple) and len(value) > 8:
        return f"[{len(value)} items]"
    return repr(value)


def checkpoint_summary(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(key, one-line summary) rows describing the checkpoint at ``path``."""
    ckpt = read_checkpoint(path)
    state: dict[str, torch.Tensor] = ckpt["state_dict"]
    n_values = sum(t.numel() for t in state.values() if t.is_floating_point())
    rows = [
        ("file", str(Path(path))),
        ("format", ckpt["format"]),
        ("keys", ", ".join(k for k, v in ckpt.items() if v not in (None, {}, []))),
        ("arch", str(ckpt["arch"])),
        ("dataset", str(ckpt["dataset"])),
        ("epoch", str(ckpt["epoch"])),
    ]
    rows += [(f"extras.{k}", _short(v)) for k, v in ckpt["extras"].items()]
    opt = ckpt["optimizer_state_dict"]
    if opt:
        groups = opt.get("param_groups") or [{}]
        hyper = {k: v for k, v in groups[0].items() if k in ("lr", "momentum", "weight_decay", "betas", "nesterov")}
        rows.append(("optimizer", f"{ckpt['optimizer_type'] or 'unknown type'} {_short(hyper)}"))
    rows.append(("state_dict", f"{len(state)} tensors, {n_values:,} floating-point values"))
    rows += [
        (f"  {name}", f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')} sparsity {_sparsity(t):.2f}%")
        for name, t in state.items()
    ]
    masks = (ckpt["compression_sched"] or {}).get("masks_dict") or {}
    set_masks = {k: m for k, m in masks.items() if m is not None}
    if masks:
        rows.append(("masks", f"{len(set_masks)} of {len(masks)} parameters masked"))
        rows += [(f"  {name}", f"{tuple(m.shape)} sparsity {_sparsity(m):.2f}%") for name, m in set_masks.items()]
    for i, data in enumerate(ckpt["thinning_plans"]):
        plan = ThinningPlan.from_dict(data)
        rows.append((f"thinning_plans[{i}]", f"{len(plan)} slices of {len(plan.tensor_names)} tensors"))
        rows += [(f"  {s.tensor}", f"dim {s.dim}: keep {len(s.keep)}") for s in plan.slices]
    if ckpt["quantizer_metadata"]:
        rows.append(("quantizer_metadata", _short(ckpt["quantizer_metadata"])))
    return rows


def describe_checkpoint(path: str | os.PathLike) -> str:
    """A printable multi-line description of the checkpoint at ``path`` (the library never prints)."""
    rows = checkpoint_summary(path)
    width = min(max(len(k) for k, _ in rows), 60)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
