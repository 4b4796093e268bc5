"""The dataflow graph of a model (``torch.fx``), its queries, MACs, and channel-coupling groups."""

from distiller.graph.macs import conv_macs, linear_macs, module_macs, volume
from distiller.graph.model_graph import GraphNode, ModelGraph, build_graph, example_input

__all__ = [
    "GraphNode",
    "ModelGraph",
    "build_graph",
    "conv_macs",
    "example_input",
    "linear_macs",
    "module_macs",
    "volume",
]
