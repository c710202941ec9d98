"""Straight-line Python for a compiled program: what `minigrad.compile` replays.

A traced program is a list of steps. Interpreting it on every call means a loop, a list of
operand indices and a dict of cotangents per op; for a small RNN that bookkeeping costs as
much as the NumPy calls. Here each program becomes one Python function with one line per
NumPy call, its operands and cotangents in named variables (`v[3]`, `c12`), compiled once.

- `forward_function(steps)`: `v[out] = forward(v[a], v[b], **options)` per step, and
  `v[i] = None` where a value is read for the last time.
- `BackwardWriter.run(values, seed)`: the reverse sweep of `minigrad.tape.sweep`, with the
  cotangent rules of `tape._Cotangents` (first contribution kept as it is, a second one
  added into a new array, later ones in place; broadcast shapes summed down; a `Cotangent`
  added into or densified), run once on real arrays. Each rule it applies it also writes
  down, so that the code it returns applies the same rules, in the same order, to the same
  kinds of arrays on later calls: which rule applies depends only on shapes, dtypes and
  which VJP returns what kind of value, and those are fixed by the program's signature.
  Called with `free`, that code drops each value of the forward pass after the last VJP
  that reads it (when the graph is not kept for another backward).
- `fused_replay(...)`: `minigrad.compile`'s `value_and_backward` in one function: the load,
  forward and backward code above, its values in local variables (`v3`) rather than a list,
  then each leaf's cotangent handed to its `.grad`.
"""

from __future__ import annotations

import builtins
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .tape import Cotangent, sum_to_shape

__all__ = ["BackwardWriter", "Source", "forward_function", "fused_replay", "out_read"]

# Every Source's names are numbered from one counter, so that the code of several (a program's
# load, forward and backward) can run in one function's globals.
_NAMES = itertools.count()


class Source:
    """Lines of one function's body, and the objects its names refer to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"array": np.array, "asarray": np.asarray,
                                      "ndarray": np.ndarray, "sum_to_shape": sum_to_shape}
        self.named: dict[int, str] = {}  # id(value) -> its name (`names` keeps it alive)

    def name(self, value: Any, prefix: str) -> str:
        """A name for `value` in the function's globals (one per object)."""
        name = self.named.get(id(value))
        if name is None:
            name = self.named[id(value)] = f"{prefix}{next(_NAMES)}"
            self.names[name] = value
        return name

    def add(self, line: str) -> None:
        self.lines.append("    " + line)

    def function(self, signature: str, what: str) -> Callable[..., Any]:
        """The function; its `source` attribute is this Source (for `fused_replay`)."""
        source = f"def {signature}:\n" + "\n".join(self.lines or ["    pass"]) + "\n"
        builtins.exec(builtins.compile(source, f"<minigrad.compile {what}>", "exec"),
                      self.names)
        function = self.names[signature.split("(")[0]]
        function.source = self
        return function


def _call(source: Source, fn: Callable[..., Any], operands: Sequence[str],
          options: dict[str, Any]) -> str:
    arguments = list(operands)
    if options:
        arguments.append("**" + source.name(options, "o"))
    return f"{source.name(fn, 'f')}({', '.join(arguments)})"


def forward_function(steps: Sequence[tuple[Callable[..., Any], Sequence[int], dict[str, Any],
                                           int, int | None, Sequence[int], bool]]
                     ) -> Callable[[list], None]:
    """`forward(v)`: each step `(forward, inputs, options, out, residual, frees, scalar)` as
    `v[out] = forward(*v[inputs], **options)` (made an array if `scalar`: a 0-d result may
    come as a NumPy scalar), or `v[out], v[residual] = ...` for an op with a residual, then
    the values in `frees` dropped."""
    source = Source()
    for forward, inputs, options, out, residual, frees, scalar in steps:
        call = _call(source, forward, [f"v[{i}]" for i in inputs], options)
        if residual is not None:
            source.add(f"v[{out}], v[{residual}] = {call}")
            if scalar:
                source.add(f"v[{out}] = asarray(v[{out}])")
        else:
            source.add(f"v[{out}] = asarray({call})" if scalar else f"v[{out}] = {call}")
        for i in frees:
            source.add(f"v[{i}] = None")
    return source.function("forward(v)", "forward")


def out_read(step: Any) -> tuple[int, ...]:
    """The index of the value a step's VJPs get as `out` (its residual or its output), if
    they read one."""
    if step.residual is not None:
        return (step.residual,)
    return (step.out.index,) if step.saves_output else ()


class BackwardWriter:
    """The backward sweep of one program, run once and written down as it runs.

    `steps` are the program's recorded steps in reverse order, each with `out` (its value's
    slot: `.index`, `.shape`, `.dtype`), `grad_inputs` (the slot of each input, or None),
    `vjps`, `saved` (the value indices the VJPs read, None for an operand not kept),
    `saves_output`, `residual` (the index of the value the VJPs get as `out` in place of the
    output, or None) and `options`. `result` is the slot of the value backpropagated from,
    `leaves` the slots whose cotangents are returned.
    """

    def __init__(self, steps: Sequence[Any], result: Any, leaves: Sequence[Any]):
        self.steps = steps
        self.result = result
        self.leaves = leaves

    def run(self, values: list[Any], seed: np.ndarray) -> tuple[list[np.ndarray],
                                                                Callable[..., list]]:
        """The cotangents of the leaves for `seed`, and `backward(v, seed, free)`, the code
        that computes them the same way for other values of the same signature."""
        self.source = Source()
        self.cotangents: dict[Any, np.ndarray] = {}
        self.owned: set[Any] = set()  # the vertices whose array this sweep allocated
        self.add(self.result, seed, "seed")
        last_read: dict[int, int] = {}  # value index -> the line after its last reader
        for step in self.steps:
            if self.sweep_step(step, values):
                for i in step.saved + out_read(step):
                    if i is not None:
                        last_read[i] = len(self.source.lines)
        self.write_frees(last_read)
        grads = []
        returned = []
        # Whether each leaf's cotangent is an array this code allocates (summed down, or
        # added into): only those may be handed to a caller without a copy.
        self.fresh = []
        for leaf in self.leaves:
            g = self.cotangents.pop(leaf)
            name = f"c{leaf.index}"
            fresh = leaf in self.owned
            if g.shape != leaf.shape:
                g = sum_to_shape(g, leaf.shape)
                name = f"sum_to_shape({name}, {self.source.name(leaf.shape, 's')})"
                fresh = g.base is None
            grads.append(g)
            returned.append(name)
            self.fresh.append(fresh)
        self.source.add(f"return [{', '.join(returned)}]")
        backward = self.source.function("backward(v, seed, free)", "backward")
        backward.returned = returned  # type: ignore[attr-defined]
        del self.source, self.cotangents, self.owned
        return grads, backward

    def write_frees(self, last_read: dict[int, int]) -> None:
        """After the last line reading each value: `if free: v[i] = None`."""
        after: dict[int, list[int]] = {}
        for i, line in last_read.items():
            after.setdefault(line, []).append(i)
        lines = self.source.lines
        for line in sorted(after, reverse=True):
            dropped = " = ".join(f"v[{i}]" for i in sorted(after[line]))
            lines.insert(line, f"    if free: {dropped} = None")

    def sweep_step(self, step: Any, values: list[Any]) -> bool:
        """Run and write one step's VJPs; False if the step is not on a path to the result."""
        slot = step.out
        g = self.cotangents.pop(slot, None)
        if g is None:  # not on a path to the result: nothing to write
            return False
        self.owned.discard(slot)
        source = self.source
        source.add(f"g = c{slot.index}")
        source.add(f"c{slot.index} = None")  # dropped once used, as the sweep drops it
        if g.shape != slot.shape:
            g = sum_to_shape(g, slot.shape)
            source.add(f"g = sum_to_shape(g, {source.name(slot.shape, 's')})")
        read = out_read(step)
        out = values[read[0]] if read else None
        args = [None if i is None else values[i] for i in step.saved]
        operands = ["g", f"v[{read[0]}]" if read else "None"] + [
            "None" if i is None else f"v[{i}]" for i in step.saved]
        for x, vjp in zip(step.grad_inputs, step.vjps):
            if x is None:
                continue
            gx = vjp(g, out, *args, **step.options)
            source.add(f"t = {_call(source, vjp, operands, step.options)}")
            self.add(x, gx, "t")
        source.add("g = t = None")
        return True

    def add(self, x: Any, g: Any, name: str) -> None:
        """Add `g` (called `name` in the code) to the cotangent of `x`, by the rules of
        `tape._Cotangents.add`, and write the rule applied."""
        source, cotangents, owned = self.source, self.cotangents, self.owned
        var = f"c{x.index}"
        current = cotangents.get(x)
        if type(g) is not np.ndarray:
            if isinstance(g, Cotangent):
                if current is not None and x in owned and current.shape == x.shape:
                    g.add_into(current)
                    source.add(f"{name}.add_into({var})")
                    return
                dense = g.densify(x.shape, x.dtype)
                source.add(f"d = {name}.densify({source.name(x.shape, 's')}, "
                           f"{source.name(x.dtype, 'dtype')})")
                if current is not None:
                    dense += sum_to_shape(current, x.shape)
                    source.add(f"d += sum_to_shape({var}, {source.name(x.shape, 's')})")
                cotangents[x] = dense
                owned.add(x)
                source.add(f"{var} = d")
                source.add("d = None")
                return
            if isinstance(g, np.generic) and current is None:  # 0-d arithmetic's NumPy scalar
                # Copied where a replay's VJP returns an array instead (another path for
                # other values): a new array either way, the sweep's own.
                cotangents[x] = np.array(g)
                owned.add(x)
                source.add(f"{var} = array({name})")
                return
            g = np.asarray(g)
            source.add(f"{name} = asarray({name})")
        if current is None:
            cotangents[x] = g
            source.add(f"{var} = {name}")
            return
        if g.shape != current.shape:
            g = sum_to_shape(g, x.shape)
            source.add(f"{name} = sum_to_shape({name}, {source.name(x.shape, 's')})")
            if current.shape != x.shape:
                current = sum_to_shape(current, x.shape)
                owned.discard(x)
                source.add(f"{var} = sum_to_shape({var}, {source.name(x.shape, 's')})")
        if x in owned:
            current += g
            source.add(f"{var} += {name}")
        else:
            cotangents[x] = np.asarray(current + g)
            owned.add(x)
            source.add(f"{var} = asarray({var} + {name})")


_SLOT = re.compile(r"\bv\[(\d+)\]")


def fused_replay(load: Any, forward: Any, backward: Any, constants: Sequence[tuple[int, Any]],
                 result: int, seed: np.ndarray,
                 leaves: Sequence[tuple[Any, np.dtype, bool]]) -> Callable[[Sequence[Any]], Any]:
    """`replay(args)`: the code of `load`, `forward` and `backward` (made by the functions
    above; backward's run with free=True) in one function, each value `v[i]` a local `vi`
    (the constant ones given by `constants`, (index, value)); then, for each `(leaf, dtype,
    fresh)` of `leaves`, its cotangent converted to `dtype` (or copied unless `fresh`) and
    set as or added to `leaf.grad`, as `value_and_backward` does. Returns the loss, value
    `result`, as a float; None, having done nothing, if `load` finds the program stale."""
    source = Source()
    for part in (load, forward, backward):
        source.names.update(part.source.names)
    for i, value in constants:
        source.add(f"v{i} = {source.name(value, 'k')}")
    # load's lines but its first (`v = template[:]`) and last (`return v`)
    lines = load.source.lines[1:-1] + forward.source.lines
    lines.append(f"    out = v[{result}]")  # before backward, which may free it
    lines.append(f"    seed = {source.name(seed, 'seed')}")
    lines += [line.replace("if free: ", "") for line in backward.source.lines[:-1]]
    source.lines += [_SLOT.sub(r"v\1", line) for line in lines]
    for (leaf, dtype, fresh), g in zip(leaves, backward.returned):
        dt = source.name(dtype, "dtype")
        source.add(f"g = {g}")
        source.add(f"if g.dtype is not {dt} and g.dtype != {dt}: g = g.astype({dt})")
        if not fresh:  # a VJP's own array: the caller's copy
            source.add("else: g = g.copy()")
        source.add(f"leaf = {source.name(leaf, 'leaf')}")
        source.add("leaf.grad = g if leaf.grad is None else leaf.grad + g")
    source.add("return out.item()")
    return source.function("replay(args)", "replay")
