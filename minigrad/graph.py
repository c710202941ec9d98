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

import numbers
from typing import Any, Iterable, Mapping

import numpy as np

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
    labels = _names(names)
    seen = {tensor}
    ops: list[Tensor] = []
    leaves: list[Tensor] = []
    constant_values: list[Any] = []
    constant_index: dict[int, int] = {}
    inputs: dict[Tensor, list[Tensor | int]] = {}  # op output -> its inputs (an int: a constant)
    stack = [tensor]
    while stack:
        t = stack.pop()
        node = t._node
        if node is None:
            leaves.append(t)
            continue
        if node.inputs is None:
            raise ValueError(f"to_dot: the graph through '{node.name}' was released by "
                             "backward(); pass retain_graph=True to keep it")
        ops.append(t)
        sources: list[Tensor | int] = []
        for x, arg in zip(node.inputs, node.args):
            if x is not None:
                if x not in seen:
                    seen.add(x)
                    stack.append(x)
                sources.append(x)
            elif constants:
                key = id(arg) if isinstance(arg, np.ndarray) else None
                if key is None or key not in constant_index:
                    constant_values.append(arg)
                    if key is not None:
                        constant_index[key] = len(constant_values) - 1
                sources.append(len(constant_values) - 1 if key is None else constant_index[key])
        inputs[t] = sources

    ops.sort(key=lambda t: t._node.position)
    ids: dict[Tensor | int, str] = {t: f"leaf{i}" for i, t in enumerate(leaves)}
    ids.update({t: f"op{i}" for i, t in enumerate(ops)})
    for t in ops:  # constants numbered by first use, in tape order
        for source in inputs[t]:
            if isinstance(source, int) and source not in ids:
                ids[source] = f"const{len(ids) - len(leaves) - len(ops)}"
    lines = [f"digraph {_quote(title)} {{", '  node [fontname="Helvetica", fontsize=10];']
    for t in leaves:
        label = _join(labels.get(t), _shape(t.data), "requires grad")
        lines.append(f'  {ids[t]} [label={_quote(label)}, shape=box, style=filled, '
                     f'fillcolor="#cfe2f3"{_root(t, tensor)}];')
    for i, arg in sorted(enumerate(constant_values), key=lambda c: ids[c[0]]):
        lines.append(f"  {ids[i]} [label={_quote(_constant_label(arg))}, shape=box, "
                     "style=dashed];")
    for t in ops:
        name = labels.get(t)
        label = _join(f"{name} = {t._node.name}" if name else t._node.name, _shape(t.data))
        lines.append(f"  {ids[t]} [label={_quote(label)}, shape=ellipse{_root(t, tensor)}];")
    for t in ops:
        for source in inputs[t]:
            lines.append(f"  {ids[source]} -> {ids[t]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


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


def _shape(array: np.ndarray) -> str:
    return str(tuple(array.shape)) + ("" if array.dtype == np.float64 else f" {array.dtype}")


def _constant_label(arg: Any) -> str:
    if arg is None:  # an operand the op's VJPs do not read is not kept by the graph
        return "constant"
    if isinstance(arg, numbers.Number):
        return f"{arg:.4g}"
    return _join("constant", _shape(np.asarray(arg)))


def _root(t: Tensor, root: Tensor) -> str:
    return ", peripheries=2" if t is root else ""


def _join(*parts: str | None) -> str:
    return "\n".join(p for p in parts if p)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
