"""Draw a DARTS normal and reduction cell, one above the other, edges labelled with their ops.

Nodes sit on a line (c_{k-2}, c_{k-1}, 2..5, c_{k}); each live edge is an arc above the line,
so every edge label lands at its own height, and the concatenation into c_{k} runs below it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .darts_genotype import CELL_TYPES, NODES, arch_nodes

_COLORS = {
    "max_pool_3x3": "tab:blue",
    "avg_pool_3x3": "tab:cyan",
    "skip_connect": "dimgray",
    "sep_conv_3x3": "tab:red",
    "sep_conv_5x5": "tab:orange",
    "dil_conv_3x3": "tab:green",
    "dil_conv_5x5": "tab:olive",
}
_STEP = 2.0  # horizontal distance between nodes


def _label(node: int) -> str:
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(node, str(node))


def plot_cells(arch: Mapping[str, Any], path: str, title: str | None = None) -> None:
    """Write both cells of `arch` to one PNG; 'none' edges are left out, a node with no input is grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    fig, axes = plt.subplots(2, 1, figsize=(13, 9))
    out = "c_{k}"
    for ax, cell in zip(axes, CELL_TYPES):
        graph = nx.DiGraph()
        pos = {_label(n): (n * _STEP, 0.0) for n in range(NODES[-1] + 1)}
        pos[out] = ((NODES[-1] + 1.2) * _STEP, 0.0)
        graph.add_nodes_from(pos)
        op_edges, labels, colors, dead = [], {}, [], set()
        for j, node in zip(NODES, arch_nodes(arch, cell)):
            if not node:
                dead.add(str(j))
            for op, src in node:
                edge = (_label(src), str(j))
                graph.add_edge(*edge)
                op_edges.append(edge)
                labels[edge] = op
                colors.append(_COLORS.get(op, "black"))
        concat = [(str(j), out) for j in NODES]
        graph.add_edges_from(concat)
        node_colors = [
            "lightgreen" if n.startswith("c_") else ("lightgray" if n in dead else "lightblue") for n in graph.nodes
        ]
        common = {"ax": ax, "node_size": 2000, "arrowsize": 15}
        nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=node_colors, node_size=2000, edgecolors="black")
        nx.draw_networkx_labels(graph, pos, ax=ax, font_size=9)
        nx.draw_networkx_edges(
            graph, pos, edgelist=op_edges, edge_color=colors, width=2.0, connectionstyle="arc3,rad=-0.45", **common
        )
        nx.draw_networkx_edges(
            graph, pos, edgelist=concat, edge_color="lightgray", width=1.2, connectionstyle="arc3,rad=0.25", **common
        )
        nx.draw_networkx_edge_labels(
            graph,
            pos,
            edge_labels=labels,
            ax=ax,
            font_size=9,
            rotate=False,
            connectionstyle="arc3,rad=-0.45",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.9},
        )
        ax.set_title(f"{cell} cell", fontsize=13)
        ax.set_xlim(-1.0, pos[out][0] + 1.0)
        ax.set_ylim(-2.2, 2.4)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=14)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
