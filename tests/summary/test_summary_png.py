"""Graph drawings: the DOT text always; the PNG when Graphviz's ``dot`` is installed."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from distiller.errors import ExportError
from distiller.models import create_model
from distiller.summary import draw_img_classifier_to_file, draw_model_to_file, model_to_dot, render_dot
from distiller.summary import png as png_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_graphviz = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")


@pytest.fixture(scope="module")
def simplenet() -> nn.Module:
    return create_model("simplenet_cifar", "cifar10")


def test_dot_text_has_every_op_and_shaped_edges(simplenet):
    dot = model_to_dot(simplenet)
    assert dot.startswith("digraph model {") and dot.rstrip().endswith("}")
    assert '"conv1" [label="conv1\\nConv2d"' in dot
    assert '"x" -> "conv1" [label="(1, 3, 32, 32)"]' in dot
    assert '"fc3" -> "output" [label="(1, 10)"]' in dot
    assert "param:" not in dot


def test_dot_text_with_parameters(simplenet):
    dot = model_to_dot(simplenet, display_param_nodes=True)
    assert '"param:conv1.weight" [label="conv1.weight\\n(6, 3, 5, 5)"' in dot
    assert '"param:fc3.bias" -> "fc3";' in dot


def test_residual_graph_joins_branches():
    dot = model_to_dot(create_model("resnet20_cifar", "cifar10"))
    assert '"layer2.0.downsample.1" -> "layer2.0.residual_eltwiseadd"' in dot
    assert '"layer2.0.bn2" -> "layer2.0.residual_eltwiseadd"' in dot


def test_names_are_quoted():
    model = nn.Sequential()
    model.add_module('odd"name', nn.Linear(2, 2))
    dot = model_to_dot(model, example_input=torch.randn(1, 2))
    assert '"odd\\"name"' in dot


def test_dot_file_needs_no_graphviz(simplenet, tmp_path, monkeypatch):
    monkeypatch.setattr(png_module.shutil, "which", lambda name: None)
    path = draw_model_to_file(simplenet, tmp_path / "sub" / "model.dot")
    assert path.read_text() == model_to_dot(simplenet)


def test_missing_graphviz_is_a_clear_error(simplenet, tmp_path, monkeypatch):
    monkeypatch.setattr(png_module.shutil, "which", lambda name: None)
    with pytest.raises(ExportError, match="apt install graphviz"):
        draw_model_to_file(simplenet, tmp_path / "model.png")
    assert list(tmp_path.iterdir()) == []


@needs_graphviz
def test_png_is_drawn(simplenet, tmp_path):
    path = draw_model_to_file(simplenet, tmp_path / "model.png", display_param_nodes=True)
    assert path.read_bytes().startswith(PNG_MAGIC)
    legacy = draw_img_classifier_to_file(simplenet, tmp_path / "legacy.png", "cifar10")
    assert legacy.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legacy.png", "model.png"]  # no temporary files


@needs_graphviz
def test_graphviz_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.png"
    target.write_bytes(b"old")
    with pytest.raises(ExportError, match="Graphviz could not draw"):
        render_dot("digraph { this is not dot", target)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_unwritable_path(simplenet, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="is a file, not a folder"):
        draw_model_to_file(simplenet, blocker / "model.dot")
