"""A computation graph as Graphviz DOT text, with no Graphviz dependency.

`to_dot(loss)` walks back from `loss` through the recorded ops, without recursion, and
writes:

- one node per op output, labelled with the op's name and the output's shape (an ellipse;
  the tensor `to_dot` was called on has a double outline);
- one node per leaf tensor that requires grad (a filled box: shape, "requires grad", and its
  name if `names` gives one);
- one node per constant operand, an array or a number that needs no gradient (a dashed box
  with its shape or value; the same array used twice is one node), unless
  `constants=False`. An op whose gradient does not read an operand may not keep it: such a
  constant is drawn without its shape;
- an edge from each input to the op that consumed it.

Render it with `dot -Tsvg graph.dot > graph.svg`, or paste it into any Graphviz viewer.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .tape import Node
from .tensor import Tensor


def to_dot(tensor: Tensor, names: Any = None, *, constants: bool = True,
           title: str = "minigrad") -> str:
    """The graph that computed `tensor`, as DOT text.

    `names` labels tensors: a mapping `{tensor: "w"}`, pairs `(name, tensor)` such as a
    Module's `named_parameters()`, or a Module itself. Ops are listed in the order they ran.
    Raises ValueError if part of the graph was released by `backward()`.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"to_dot: expected a Tensor, got {type(tensor).__name__}")
    # The walk is over vertices: an op's Node (its output), or a leaf Tensor. A node's inputs
    # may name a vertex either way (the Tensor, or the Node that made it).
    labels = {_vertex(t): name for t, name in _names(names).items()}
    root = _vertex(tensor)
    described = {root: (tensor.shape, tensor.dtype)}  # vertex -> (shape, dtype)
    ops: list[Node] = []
    leaves: list[Tensor] = []
    constant_values: list[Any] = []
    constant_index: dict[int, int] = {}
    inputs: dict[Node, list[Any]] = {}  # an op -> its input vertices (an int: a constant)
    stack = [root]
    while stack:
        v = stack.pop()
        if type(v) is not Node:
            leaves.append(v)
            continue
        if v.inputs is None:
            raise ValueError(f"to_dot: the graph through '{v.name}' was released by "
                             "backward(); pass retain_graph=True to keep it")
        ops.append(v)
        sources: list[Any] = []
        for x, arg in itertools.zip_longest(v.inputs, v.args):  # args unsaved: ()
            if x is not None:
                u = _vertex(x)
                if u not in described:
                    described[u] = _describe(x)
                    stack.append(u)
                sources.append(u)
            elif constants:
                # The graph keeps its own copy of a plain array each time one is used.
                key = id(arg) if isinstance(arg, np.ndarray) else None
                if key is None or key not in constant_index:
                    constant_values.append(arg)
                    if key is not None:
                        constant_index[key] = len(constant_values) - 1
                sources.append(len(constant_values) - 1 if key is None else constant_index[key])
        inputs[v] = sources

    ops.sort(key=lambda v: v.position)
    ids: dict[Any, str] = {v: f"leaf{i}" for i, v in enumerate(leaves)}
    ids.update({v: f"op{i}" for i, v in enumerate(ops)})
    for v in ops:  # constants numbered by first use, in tape order
        for source in inputs[v]:
            if type(source) is int and source not in ids:
                ids[source] = f"const{len(ids) - len(leaves) - len(ops)}"
    lines = [f"digraph {_quote(title)} {{", '  node [fontname="Helvetica", fontsize=10];']
    for v in leaves:
        label = _join(labels.get(v), _shape(*described[v]), "requires grad")
        lines.append(f'  {ids[v]} [label={_quote(label)}, shape=box, style=filled, '
                     f'fillcolor="#cfe2f3"{_root(v, root)}];')
    for i, arg in sorted(enumerate(constant_values), key=lambda c: ids[c[0]]):
        lines.append(f"  {ids[i]} [label={_quote(_constant_label(arg))}, shape=box, "
                     "style=dashed];")
    for v in ops:
        name = labels.get(v)
        label = _join(f"{name} = {v.name}" if name else v.name, _shape(*described[v]))
        lines.append(f"  {ids[v]} [label={_quote(label)}, shape=ellipse{_root(v, root)}];")
    for v in ops:
        for source in inputs[v]:
            lines.append(f"  {ids[source]} -> {ids[v]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _vertex(x: Any) -> Any:
    """The graph vertex of a Tensor (the node that made it, or itself if a leaf), or of a
    Node (itself)."""
    if type(x) is Node:
        return x
    return x if x._node is None else x._node


def _describe(x: Any) -> tuple[tuple[int, ...], np.dtype]:
    if type(x) is Node:
        return x.shape, x.dtype
    return x.shape, x.dtype


def _names(names: Any) -> dict[Tensor, str]:
    if names is None:
        return {}
    if hasattr(names, "named_parameters"):
        names = names.named_parameters()
    if isinstance(names, Mapping):
        pairs: Iterable = names.items()
    else:
        pairs = names
    labels: dict[Tensor, str] = {}
    for a, b in pairs:
        tensor, name = (a, b) if isinstance(a, Tensor) else (b, a)
        if not isinstance(tensor, Tensor):
            raise TypeError("to_dot: names must map tensors to names, or be (name, tensor) pairs")
        labels[tensor] = str(name)
    return labels


def _shape(shape: tuple[int, ...], dtype: Any) -> str:
    return str(tuple(shape)) + ("" if dtype == np.float64 else f" {dtype}")


def _constant_label(arg: Any) -> str:
    if arg is None:  # an operand the op's VJPs do not read is not kept by the graph
        return "constant"
    if isinstance(arg, numbers.Number):
        return f"{arg:.4g}"
    arg = np.asarray(arg)
    return _join("constant", _shape(arg.shape, arg.dtype))


def _root(v: Any, root: Any) -> str:
    return ", peripheries=2" if v is root else ""


def _join(*parts: str | None) -> str:
    return "\n".join(p for p in parts if p)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
