"""Drawings of a model's dataflow graph (``--summary png`` / ``png_w_params``).

The DOT text is generated here from :class:`~distiller.graph.ModelGraph` (operations as boxes,
edges labelled with the tensor shapes they carry, and optionally the parameters as ovals), so it
needs nothing installed: :func:`model_to_dot` always works, and a ``.dot``/``.gv`` path is written as
text. Turning it into a picture needs Graphviz's ``dot`` program, run as a subprocess. The
``pydot`` and ``graphviz`` Python packages are not used: both only wrap that same program, so they
could not draw anything where it is missing; the error then says how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from distiller.errors import ExportError
from distiller.fileio import atomic_output
from distiller.graph import ModelGraph, build_graph
from distiller.graph import example_input as make_example_input
from distiller.naming import normalize_module_name

__all__ = ["draw_img_classifier_to_file", "draw_model_to_file", "graph_to_dot", "model_to_dot", "render_dot"]

_TEXT_FORMATS = ("dot", "gv")
_OP_STYLE = 'shape=box, style="filled,rounded", fillcolor="#6495ED"'
_FUNCTION_STYLE = 'shape=box, style="filled,rounded", fillcolor="#B0C4DE"'
_IO_STYLE = 'shape=box, style="filled,rounded", fillcolor="#F0F0F0"'
_PARAM_STYLE = 'shape=oval, style=filled, fillcolor="#D3D3D3"'
_INSTALL_HINT = (
    "install Graphviz (apt install graphviz, brew install graphviz or conda install graphviz) so that the "
    "'dot' program is on PATH, or write a .dot file instead and render it elsewhere"
)


def _quote(text: str) -> str:
    """A DOT string literal; a newline becomes DOT's ``\\n`` line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _shape_str(shape: Sequence[int] | None) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")" if shape is not None else "?"


def graph_to_dot(graph: ModelGraph, display_param_nodes: bool = False, rankdir: str = "TB") -> str:
    """DOT text of ``graph``: one node per operation, edges labelled with tensor shapes.

    Args:
        graph: the model graph.
        display_param_nodes: also draw every parameter (name and shape) feeding its operation, as
            the original's ``png_w_params`` did.
        rankdir: Graphviz layout direction (``TB`` top to bottom, ``LR`` left to right).
    """
    lines = [
        "digraph model {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for node in graph.nodes.values():
        if node.kind in ("input", "output"):
            label = f"{node.name}\n{_shape_str(node.output_shape)}" if node.kind == "input" else node.name
            style = _IO_STYLE
        else:
            same = node.name.rsplit(".", 1)[-1] == node.op_type  # a functional op named after itself
            label = node.name if same else f"{node.name}\n{node.op_type}"
            style = _OP_STYLE if node.kind == "module" else _FUNCTION_STYLE
        lines.append(f"  {_quote(node.name)} [label={_quote(label)}, {style}];")
    for src, dst in graph.edges:
        shape = graph.nodes[src].output_shape
        lines.append(f"  {_quote(src)} -> {_quote(dst)} [label={_quote(_shape_str(shape))}];")
    if display_param_nodes:
        shapes = {normalize_module_name(n): tuple(p.shape) for n, p in graph.model.named_parameters()}
        drawn: set[str] = set()
        for node in graph.nodes.values():
            for param in node.params:
                pid = f"param:{param}"
                if param not in drawn:
                    drawn.add(param)
                    label = f"{param}\n{_shape_str(shapes.get(param))}"
                    lines.append(f"  {_quote(pid)} [label={_quote(label)}, {_PARAM_STYLE}];")
                lines.append(f"  {_quote(pid)} -> {_quote(node.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def model_to_dot(
    model: nn.Module,
    dataset: str | None = None,
    example_input: torch.Tensor | None = None,
    display_param_nodes: bool = False,
    rankdir: str = "TB",
) -> str:
    """DOT text of ``model`` run on ``example_input`` (default: one random sample of ``dataset``'s shape)."""
    example = make_example_input(model, dataset) if example_input is None else example_input[:1]
    return graph_to_dot(build_graph(model, example=example), display_param_nodes, rankdir)


def render_dot(dot_text: str, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``dot_text`` to ``path``: as text for ``.dot``/``.gv``, else drawn by Graphviz's ``dot``.

    Args:
        dot_text: a DOT graph.
        path: the output file; written atomically.
        fmt: the Graphviz output format (``png``, ``svg``, ``pdf``, ...); default: the suffix of
            ``path``, or ``png``.

    Raises:
        ExportError: Graphviz is not installed or fails, or ``path`` cannot be written.
    """
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "png").lower()
    if fmt in _TEXT_FORMATS:
        with atomic_output(path, "DOT file") as tmp:
            tmp.write_text(dot_text)
        return path
    exe = shutil.which("dot")
    if exe is None:
        raise ExportError(f"Drawing {str(path)!r} needs Graphviz's 'dot' program, not found on PATH: {_INSTALL_HINT}.")
    with atomic_output(path, f"{fmt.upper()} drawing") as tmp:
        try:
            proc = subprocess.run(
                [exe, f"-T{fmt}", "-o", str(tmp)], input=dot_text, text=True, capture_output=True, check=False
            )
        except OSError as e:
            raise ExportError(f"Cannot run Graphviz's 'dot' program ({exe}): {e}.") from e
        if proc.returncode != 0:
            detail = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
            raise ExportError(f"Graphviz could not draw {str(path)!r} as {fmt}: {detail}")
    return path


def draw_model_to_file(
    model: nn.Module,
    path: str | os.PathLike,
    dataset: str | None = None,
    example_input: torch.Tensor | None = None,
    display_param_nodes: bool = False,
    rankdir: str = "TB",
) -> Path:
    """Draw the dataflow graph of ``model`` to ``path`` (PNG, SVG, PDF, ... by suffix; ``.dot`` as text).

    Args:
        model: the model.
        path: the output file.
        dataset: a dataset name that tells the input shape (default: ``model.input_shape``).
        example_input: an input the model accepts (its first sample is used).
        display_param_nodes: also draw the parameters and their shapes (``png_w_params``).
        rankdir: Graphviz layout direction.

    Returns:
        The path written.

    Raises:
        GraphError: the input shape is unknown or the model does not run on it.
        ExportError: Graphviz is missing or fails, or the file cannot be written.
    """
    dot_text = model_to_dot(model, dataset, example_input, display_param_nodes, rankdir)
    return render_dot(dot_text, path)


def draw_img_classifier_to_file(
    model: nn.Module,
    png_fname: str | os.PathLike,
    dataset: str | None = None,
    display_param_nodes: bool = False,
    rankdir: str = "TB",
) -> Path:
    """The original's name and argument order for :func:`draw_model_to_file`."""
    return draw_model_to_file(model, png_fname, dataset, None, display_param_nodes, rankdir)
