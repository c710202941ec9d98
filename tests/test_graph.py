"""`minigrad.to_dot`: the graph of a loss as Graphviz DOT text, parsed back here and counted
against graphs whose size is known; and `minigrad graph counter|adder`."""

import re

import numpy as np
import pytest

import minigrad as mg
from minigrad import Tensor, nn

_NODE = re.compile(r'^\s*(\w+) \[label="((?:[^"\\]|\\.)*)"(.*)\];$')
_EDGE = re.compile(r"^\s*(\w+) -> (\w+);$")


def parse_dot(text):
    """A parser for the subset of DOT that to_dot writes: {id: (label, attributes)}, edges.
    Every edge must join declared nodes, and every line must be understood."""
    lines = text.strip().splitlines()
    assert re.match(r'^digraph "(?:[^"\\]|\\.)*" \{$', lines[0]) and lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[1:-1]:
        if line.strip().startswith("node ["):
            continue
        if m := _NODE.match(line):
            assert m[1] not in nodes, f"node {m[1]} declared twice"
            nodes[m[1]] = (m[2].replace("\\n", "\n").replace('\\"', '"'), m[3])
        elif m := _EDGE.match(line):
            edges.append((m[1], m[2]))
        else:
            raise AssertionError(f"unparsed DOT line: {line!r}")
    for a, b in edges:
        assert a in nodes and b in nodes
    return nodes, edges


def kinds(nodes):
    return {kind: sum(1 for n in nodes if n.startswith(kind)) for kind in ("leaf", "const", "op")}


def test_the_counters_graph_has_the_known_size():
    from minigrad.models.counter import Counter

    n = 4
    model = Counter()
    loss, _ = model.loss_and_states(np.ones((3, n)), np.full(3, 4.0))  # unrolled
    nodes, edges = parse_dot(mg.to_dot(loss, model))
    # Each step is the model's `step`, s * w_rec + x_k * w_x (from the constant s_0 = 0),
    # two edges per op; then the loss. Constants: s_0, each x_k, t.
    assert kinds(nodes) == {"leaf": 2, "const": n + 2, "op": 3 * n + 1}
    assert len(edges) == 6 * n + 2
    labels = sorted(label for label, _ in nodes.values() if "requires grad" in label)
    assert labels == ["w_rec\n()\nrequires grad", "w_x\n()\nrequires grad"]
    ops = [label.split("\n")[0] for node, (label, _) in nodes.items() if node.startswith("op")]
    assert ops == ["mul", "mul", "add"] * n + ["mse_loss"]  # as they ran
    roots = [node for node, (_, attributes) in nodes.items() if "peripheries=2" in attributes]
    assert roots == [f"op{3 * n}"] and nodes[roots[0]][0] == "mse_loss\n()"


def test_a_reused_tensor_is_one_node_with_an_edge_per_use():
    x = Tensor(np.ones(3), requires_grad=True)
    c = np.arange(3.0)
    y = ((x * x + x * c) * c).sum()  # x used three times, c twice
    nodes, edges = parse_dot(mg.to_dot(y, {x: "x"}))
    # The graph keeps its own copy of a plain array at each use: c is two constants.
    assert kinds(nodes) == {"leaf": 1, "const": 2, "op": 5}
    assert sum(1 for a, _ in edges if a == "leaf0") == 3
    assert sum(1 for a, _ in edges if a in ("const0", "const1")) == 2
    assert nodes["leaf0"][0] == "x\n(3,)\nrequires grad"


def test_constants_can_be_left_out_and_numbers_are_shown():
    x = Tensor(2.0, requires_grad=True)
    y = x * 3.5
    nodes, _ = parse_dot(mg.to_dot(y))
    assert nodes["const0"][0] == "3.5"
    nodes, edges = parse_dot(mg.to_dot(y, constants=False))
    assert kinds(nodes) == {"leaf": 1, "const": 0, "op": 1} and edges == [("leaf0", "op0")]


def test_names_from_a_module_and_for_intermediates():
    rng = np.random.default_rng(0)
    layer = nn.Linear(2, 3, rng=rng)
    h = layer(np.ones((4, 2)))
    out = mg.tanh(h).sum()
    labels = [label for label, _ in parse_dot(mg.to_dot(out, layer))[0].values()]
    assert "weight\n(2, 3)\nrequires grad" in labels and "bias\n(3,)\nrequires grad" in labels
    labels = [label for label, _ in parse_dot(mg.to_dot(out, {h: "h"}))[0].values()]
    assert "h = addmm\n(4, 3)" in labels


def test_awkward_names_are_escaped():
    x = Tensor(1.0, requires_grad=True)
    nodes, _ = parse_dot(mg.to_dot(x * 2.0, {x: 'a "quoted" \\ name'}, title='my "graph"'))
    assert nodes["leaf0"][0].startswith('a "quoted" \\\\ name')


def test_float32_shapes_say_their_dtype_and_a_leaf_can_be_the_root():
    x = Tensor(np.ones(2, np.float32), requires_grad=True)
    nodes, edges = parse_dot(mg.to_dot(x))
    attributes = ', shape=box, style=filled, fillcolor="#cfe2f3", peripheries=2'
    assert nodes == {"leaf0": ("(2,) float32\nrequires grad", attributes)}
    assert edges == []


def test_a_ten_thousand_op_graph_needs_no_recursion():
    x = Tensor(1.0, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0
    nodes, edges = parse_dot(mg.to_dot(y, constants=False))
    assert kinds(nodes) == {"leaf": 1, "const": 0, "op": 10_000}
    assert len(edges) == 10_000


def test_a_released_graph_is_refused():
    x = Tensor(1.0, requires_grad=True)
    y = mg.exp(x)
    y.backward()
    with pytest.raises(ValueError, match="released by backward"):
        mg.to_dot(y)
    with pytest.raises(TypeError):
        mg.to_dot(np.ones(2))


@pytest.mark.parametrize("model, steps, expected_nodes, expected_edges", [
    # counter: 3 ops per step, the loss; w_x, w_rec; constants s_0, x_1..x_n, t
    ("counter", 3, (3 * 3 + 1) + 2 + (1 + 3 + 1), 6 * 3 + 2),
    # small adder: 2 ops for Z (b_in + b_rec, addmm), S_0 broadcast (+ zeros), 3 per step
    # (slice, addmm, tanh), stack, output layer (addmm), loss (time-major: T is transposed,
    # not the logits); 7 parameters; constants X, the zeros and T
    ("adder", 3, (3 + 3 * 3 + 3) + 7 + 3, 7 + 5 * 3 + 3 + 3 + 2),
])
def test_the_graph_command(capsys, model, steps, expected_nodes, expected_edges):
    from minigrad.models.cli import main

    assert main(["graph", model, "--steps", str(steps)]) == 0
    nodes, edges = parse_dot(capsys.readouterr().out)
    assert len(nodes) == expected_nodes and len(edges) == expected_edges
