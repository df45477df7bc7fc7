"""DARTS cells as text and data: primitives, edge names, genotypes, parsing and the DARTS rule.

A cell has two inputs (node 0 = c_{k-2}, node 1 = c_{k-1}) and four intermediate nodes 2..5;
node j may read every earlier node, so a cell has 14 edges, numbered as DARTS does
(edge k->j has index k + sum_{t=2..j-1} t). The space's decisions are these 14 edges for the
normal and for the reduction cell, named `normal.<j><-<k>` / `reduce.<j><-<k>`, each choosing
one of the 8 `PRIMITIVES` (quark0 order, 'none' first).

A *genotype* is the special case with exactly two non-'none' inputs per node. It prints in
DARTS' format, `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], ...)`,
where pairs 2i and 2i+1 feed node i+2. Text is read with a small tokenizer, never `eval`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nasframe.common.errors import InvalidArchitecture
from nasframe.core.space import Arch

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
CELL_TYPES: tuple[str, ...] = ("normal", "reduce")
STEPS = 4  # intermediate nodes per cell
NODES: tuple[int, ...] = tuple(range(2, 2 + STEPS))
CONCAT: tuple[int, ...] = NODES
#: (target j, source k) of every edge, in DARTS' edge order
EDGES: tuple[tuple[int, int], ...] = tuple((j, k) for j in NODES for k in range(j))

Pair = tuple[str, int]


def edge_index(j: int, k: int) -> int:
    """DARTS' index of the edge k -> j."""
    return k + sum(range(2, j))


def decision_name(cell: str, j: int, k: int) -> str:
    return f"{cell}.{j}<-{k}"


DECISION_NAMES: tuple[str, ...] = tuple(decision_name(c, j, k) for c in CELL_TYPES for j, k in EDGES)


@dataclass(frozen=True)
class Genotype:
    """DARTS' genotype: per cell type 8 (op, input) pairs, pairs 2i, 2i+1 feeding node i+2.

    Order inside a node is kept as given (the DARTS rule lists the stronger edge first);
    `to_arch` forgets it, so genotypes that differ only in that order give the same Arch.
    """

    normal: tuple[Pair, ...]
    reduce: tuple[Pair, ...]
    normal_concat: tuple[int, ...] = CONCAT
    reduce_concat: tuple[int, ...] = CONCAT

    def to_text(self) -> str:
        """DARTS' own repr, readable by quark0's code and by `parse_genotype`."""

        def pairs(ps: tuple[Pair, ...]) -> str:
            return "[" + ", ".join(f"('{op}', {src})" for op, src in ps) + "]"

        return (
            f"Genotype(normal={pairs(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={pairs(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "normal": [[op, src] for op, src in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, src] for op, src in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Genotype:
        return genotype_from_value(data)

    def to_arch(self) -> Arch:
        nodes = {c: _pairs_to_nodes(getattr(self, c), c) for c in CELL_TYPES}
        return arch_from_nodes(nodes["normal"], nodes["reduce"])

    @classmethod
    def from_arch(cls, arch: Mapping[str, Any]) -> Genotype:
        """The genotype of `arch`; InvalidArchitecture unless every node has exactly 2 live inputs."""
        cells = {}
        for cell in CELL_TYPES:
            nodes = arch_nodes(arch, cell)
            for j, node in zip(NODES, nodes):
                if len(node) != 2:
                    raise InvalidArchitecture(
                        f"not a DARTS genotype: {cell} node {j} has {len(node)} non-'none' inputs, a genotype has 2"
                    )
            cells[cell] = tuple(p for node in nodes for p in node)
        return cls(normal=cells["normal"], reduce=cells["reduce"])


# ---- Arch <-> per-node lists ------------------------------------------------------------------
def arch_nodes(arch: Mapping[str, Any], cell: str) -> list[list[Pair]]:
    """Per intermediate node, its live inputs as (op, source) pairs in ascending source order."""
    return [
        [(str(arch[decision_name(cell, j, k)]), k) for k in range(j) if arch[decision_name(cell, j, k)] != "none"]
        for j in NODES
    ]


def is_genotype(arch: Mapping[str, Any]) -> bool:
    return all(len(node) == 2 for cell in CELL_TYPES for node in arch_nodes(arch, cell))


def arch_from_nodes(normal: Sequence[Sequence[Pair]], reduce: Sequence[Sequence[Pair]]) -> Arch:
    """An Arch from per-node (op, source) lists (pt.darts' nested form); unlisted edges are 'none'."""
    ops: dict[str, str] = {name: "none" for name in DECISION_NAMES}
    for cell, nodes in (("normal", normal), ("reduce", reduce)):
        if len(nodes) != STEPS:
            raise InvalidArchitecture(f"genotype {cell}: {len(nodes)} nodes given, a DARTS cell has {STEPS}")
        for j, node in zip(NODES, nodes):
            for pair in node:
                op, src = _check_pair(pair, cell, j)
                name = decision_name(cell, j, src)
                if ops[name] != "none":
                    raise InvalidArchitecture(
                        f"genotype {cell}: edge {j}<-{src} has two ops ({ops[name]!r} and {op!r}); one op per edge"
                    )
                ops[name] = op
    return Arch([(name, ops[name]) for name in DECISION_NAMES])


def _check_pair(pair: Any, cell: str, j: int) -> Pair:
    if not (
        isinstance(pair, (list, tuple))
        and len(pair) == 2
        and isinstance(pair[0], str)
        and isinstance(pair[1], int)
        and not isinstance(pair[1], bool)
    ):
        raise InvalidArchitecture(f"genotype {cell}: node {j} entry {pair!r} is not an (op, input) pair")
    op, src = pair
    if op not in PRIMITIVES or op == "none":
        raise InvalidArchitecture(f"genotype {cell}: unknown op {op!r}; allowed: {', '.join(PRIMITIVES[1:])}")
    if not 0 <= src < j:
        raise InvalidArchitecture(f"genotype {cell}: node {j} reads input {src}; allowed inputs are 0..{j - 1}")
    return op, src


def _pairs_to_nodes(pairs: Sequence[Pair], cell: str) -> list[list[Pair]]:
    if len(pairs) != 2 * STEPS:
        raise InvalidArchitecture(
            f"genotype {cell}: {len(pairs)} (op, input) pairs given, DARTS' flat format has {2 * STEPS} (2 per node)"
        )
    return [list(pairs[2 * i : 2 * i + 2]) for i in range(STEPS)]


# ---- values (parsed text or JSON) -> Arch / Genotype -----------------------------------------
_GENOTYPE_KEYS = ("normal", "normal_concat", "reduce", "reduce_concat")


def looks_like_genotype(value: Any) -> bool:
    return isinstance(value, Mapping) and "normal" in value and "reduce" in value


def nodes_from_value(value: Mapping[str, Any]) -> dict[str, list[list[Pair]]]:
    """Per cell type, per-node pairs from a genotype mapping in the flat or the nested format."""
    unknown = [k for k in value if k not in _GENOTYPE_KEYS]
    if unknown:
        raise InvalidArchitecture(f"genotype has unknown field {unknown[0]!r}; fields: {', '.join(_GENOTYPE_KEYS)}")
    out = {}
    for cell in CELL_TYPES:
        if cell not in value:
            raise InvalidArchitecture(f"genotype misses field {cell!r}")
        concat = value.get(f"{cell}_concat", list(CONCAT))
        if not isinstance(concat, (list, tuple)) or list(concat) != list(CONCAT):
            raise InvalidArchitecture(f"genotype {cell}_concat must be [2, 3, 4, 5] (range(2, 6)); got {concat!r}")
        items = value[cell]
        if not isinstance(items, (list, tuple)) or not items:
            raise InvalidArchitecture(f"genotype {cell} must be a non-empty list of (op, input) pairs")
        nested = all(isinstance(x, (list, tuple)) and (not x or isinstance(x[0], (list, tuple))) for x in items)
        if nested:
            out[cell] = [list(node) for node in items]
        else:
            out[cell] = _pairs_to_nodes(items, cell)
    return out


def arch_from_value(value: Mapping[str, Any]) -> Arch:
    nodes = nodes_from_value(value)
    return arch_from_nodes(nodes["normal"], nodes["reduce"])


def genotype_from_value(value: Mapping[str, Any]) -> Genotype:
    """A Genotype (keeping the given pair order); every node must have exactly 2 inputs."""
    nodes = nodes_from_value(value)
    arch_from_nodes(nodes["normal"], nodes["reduce"])  # validates ops, inputs and duplicate edges
    cells = {}
    for cell in CELL_TYPES:
        for j, node in zip(NODES, nodes[cell]):
            if len(node) != 2:
                raise InvalidArchitecture(f"not a DARTS genotype: {cell} node {j} has {len(node)} inputs, not 2")
        cells[cell] = tuple((str(op), int(src)) for node in nodes[cell] for op, src in node)
    return Genotype(normal=cells["normal"], reduce=cells["reduce"])


# ---- text --------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'[^'\\\n]*'|\"[^\"\\\n]*\")|(?P<int>-?\d+)|(?P<ident>[A-Za-z_]\w*)"
    r"|(?P<punct>[\[\](),=]))"
)
_MAX_TEXT = 20_000


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    end = len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None:
            bad = text[pos:].lstrip()[:1]
            raise InvalidArchitecture(f"cannot read genotype: unexpected {bad!r} at character {pos}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return tokens


class _Parser:
    """Recursive descent over the literal subset DARTS prints: lists, tuples, strings, ints, range(a, b)."""

    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", -1)

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tok_kind, tok, pos = self.peek()
        if (value is not None and tok != value) or (kind is not None and tok_kind != kind):
            want = repr(value) if value is not None else kind
            got = repr(tok) if tok_kind != "end" else "end of text"
            raise InvalidArchitecture(
                f"cannot read genotype: expected {want} but found {got}" + (f" at character {pos}" if pos >= 0 else "")
            )
        self.i += 1
        return tok

    def call(self) -> dict[str, Any]:
        if self.peek()[0] == "ident":
            name = self.take(kind="ident")
            if name != "Genotype":
                raise InvalidArchitecture(f"cannot read genotype: expected Genotype(...), found {name}(...)")
        self.take("(")
        fields: dict[str, Any] = {}
        while self.peek()[1] != ")":
            key = self.take(kind="ident")
            self.take("=")
            if key in fields:
                raise InvalidArchitecture(f"cannot read genotype: field {key!r} given twice")
            fields[key] = self.value()
            if self.peek()[1] != ")":
                self.take(",")
        self.take(")")
        if self.peek()[0] != "end":
            raise InvalidArchitecture(f"cannot read genotype: unexpected {self.peek()[1]!r} after the closing ')'")
        return fields

    def sequence(self, close: str) -> list[Any]:
        items = []
        while self.peek()[1] != close:
            items.append(self.value())
            if self.peek()[1] != close:
                self.take(",")
        self.take(close)
        return items

    def value(self) -> Any:
        kind, tok, _ = self.peek()
        if tok == "[":
            self.take("[")
            return self.sequence("]")
        if tok == "(" and kind == "punct":
            self.take("(")
            return tuple(self.sequence(")"))
        if kind == "str":
            self.take()
            return tok[1:-1]
        if kind == "int":
            self.take()
            return int(tok)
        if kind == "ident" and tok == "range":
            self.take()
            self.take("(")
            args = self.sequence(")")
            if len(args) != 2 or not all(isinstance(a, int) for a in args) or not 0 <= args[1] - args[0] <= 64:
                raise InvalidArchitecture(
                    f"cannot read genotype: range{tuple(args)} must be range(a, b) with small ints"
                )
            return list(range(args[0], args[1]))
        raise InvalidArchitecture(f"cannot read genotype: unexpected {tok or 'end of text'!r}")


def parse_genotype_fields(text: str) -> dict[str, Any]:
    """The fields of a `Genotype(...)` text (flat DARTS or nested pt.darts lists), as plain data."""
    if len(text) > _MAX_TEXT:
        raise InvalidArchitecture(f"genotype text is {len(text)} characters; at most {_MAX_TEXT} allowed")
    return _Parser(text).call()


def parse_genotype(text: str) -> Genotype:
    """A Genotype from DARTS' text (or pt.darts' nested lists with two pairs per node)."""
    return genotype_from_value(parse_genotype_fields(text))


# ---- the DARTS derivation rule ----------------------------------------------------------------
def derive_genotype(
    weights: Mapping[str, Sequence[float]] | Sequence[Sequence[float]],
    choices: Mapping[str, Sequence[str]] | None = None,
) -> Genotype:
    """DARTS' rule: per node keep the 2 incoming edges whose strongest non-'none' weight is largest;
    on each the argmax non-'none' op; concat [2..5].

    `weights` maps decision names to per-op weights aligned with `choices[name]` (default: all of
    `PRIMITIVES`), or is a 28 x 8 table in decision order. Ties go to the lower edge and the lower
    op index, as in DARTS (stable sort, strict comparison). The stronger edge is listed first.
    """
    if not isinstance(weights, Mapping):
        rows = [list(r) for r in weights]
        if len(rows) != len(DECISION_NAMES):
            raise InvalidArchitecture(f"weights table has {len(rows)} rows; the DARTS space has {len(DECISION_NAMES)}")
        weights = dict(zip(DECISION_NAMES, rows))
    full: dict[str, list[float]] = {}
    for name in DECISION_NAMES:
        if name not in weights:
            raise InvalidArchitecture(f"weights miss decision {name!r}")
        ops = list(choices[name]) if choices is not None and name in choices else list(PRIMITIVES)
        row = [float(w) for w in weights[name]]
        if len(row) != len(ops):
            raise InvalidArchitecture(f"weights for {name} have {len(row)} entries; its choices are {len(ops)}")
        by_op = dict(zip(ops, row))
        full[name] = [by_op.get(op, -math.inf) for op in PRIMITIVES]
    cells = {}
    for cell in CELL_TYPES:
        gene: list[Pair] = []
        for j in NODES:
            rows = [full[decision_name(cell, j, k)] for k in range(j)]
            strength = [max(r[1:]) for r in rows]
            top = sorted(range(j), key=lambda k: -strength[k])[:2]
            for k in top:
                if strength[k] == -math.inf:
                    raise InvalidArchitecture(
                        f"DARTS rule: {cell} node {j} has fewer than 2 edges with a non-'none' op allowed"
                    )
                best = 1
                for o in range(2, len(PRIMITIVES)):
                    if rows[k][o] > rows[k][best]:
                        best = o
                gene.append((PRIMITIVES[best], k))
        cells[cell] = tuple(gene)
    return Genotype(normal=cells["normal"], reduce=cells["reduce"])


# ---- published genotypes ----------------------------------------------------------------------
#: quark0/darts genotypes.py; MDENAS run_darts_cifar.sh (pt.darts nested format); AngleNAS
#: DARTS/training/genotypes.py; GM-NAS README (search_darts_sota_ws_res_s5_2_..._id_5).
PUBLISHED: dict[str, str] = {
    "DARTS_V1": "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])",
    "DARTS_V2": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])",
    "MDENAS": "Genotype(normal=[[('sep_conv_5x5', 1), ('sep_conv_3x3', 0)], [('skip_connect', 0), "
    "('sep_conv_5x5', 1)], [('sep_conv_5x5', 3), ('sep_conv_3x3', 1)], [('dil_conv_5x5', 3), "
    "('max_pool_3x3', 4)]], normal_concat=range(2, 6), reduce=[[('max_pool_3x3', 0), "
    "('sep_conv_5x5', 1)], [('skip_connect', 0), ('skip_connect', 1)], [('sep_conv_3x3', 3), "
    "('skip_connect', 2)], [('dil_conv_3x3', 3), ('sep_conv_5x5', 0)]], reduce_concat=range(2, 6))",
    "DARTS_ABS": "Genotype(normal=[('sep_conv_3x3', 1), ('dil_conv_3x3', 0), ('sep_conv_5x5', 1), "
    "('sep_conv_3x3', 2), ('dil_conv_3x3', 2), ('sep_conv_5x5', 1), ('dil_conv_3x3', 4), "
    "('dil_conv_5x5', 2)], normal_concat=range(2, 6), reduce=[('dil_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 2), ('dil_conv_3x3', 0), "
    "('dil_conv_5x5', 3), ('dil_conv_3x3', 0), ('dil_conv_3x3', 2)], reduce_concat=range(2, 6))",
    "PDARTS_ABS": "Genotype(normal=[('dil_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 2), ('sep_conv_5x5', 0), ('sep_conv_5x5', 3), ('dil_conv_5x5', 2), "
    "('dil_conv_3x3', 4)], normal_concat=range(2, 6), reduce=[('dil_conv_3x3', 0), "
    "('dil_conv_5x5', 1), ('sep_conv_3x3', 1), ('sep_conv_5x5', 2), ('dil_conv_5x5', 1), "
    "('sep_conv_5x5', 3), ('dil_conv_3x3', 2), ('dil_conv_3x3', 4)], reduce_concat=range(2, 6))",
    "GM_NAS": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('dil_conv_3x3', 2), "
    "('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('dil_conv_5x5', 3), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('dil_conv_5x5', 2), ('sep_conv_3x3', 0), ('dil_conv_3x3', 3), "
    "('skip_connect', 1), ('dil_conv_5x5', 4), ('sep_conv_5x5', 3)], reduce_concat=range(2, 6))",
}
ALIASES: dict[str, str] = {"DARTS": "DARTS_V2"}
