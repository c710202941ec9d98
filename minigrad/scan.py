"""`scan(f, init, xs)`: a loop whose backward the engine derives.

`f(carry, x) -> (carry, y)` is traced once per call (`minigrad.trace`) into a program;
the loop runs that program's forward once per step, and backward runs its backward once
per step in reverse: the body's own ops' VJPs, nothing written for the loop. The carry's
cotangent passes from step to step; each step's contributions to a tensor the body reads
from outside (a loop invariant: a weight) are added up as an unrolled graph's would be, by
the tape's rule, and the xs' cotangents are stacked.

The whole loop is one op of the tape with one node; its outputs (the final carry's
tensors and the stacked ys) are parts of that node's output, an object array, so that one
backward of the loop receives every output's cotangent at once.
"""

from __future__ import annotations

import contextlib
import numbers
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import anomaly, tape
from .modes import ANOMALY, RECORDING, TraceError, current_mode, no_grad
from .ops import astype
from .primitive import Domain, Op, defop, identity_vjp, recorder, writes_into
from .tape import Contributions, accumulate, sum_to_shape
from .tensor import Tensor, plain_array
from .trace import Program, Trace, _node, _part, frozen, settle

__all__ = ["scan"]


def _flatten(tree: Any, what: str) -> tuple[list[Any], int | None]:
    """The leaves of a Tensor, array or number, or a tuple of them; the tuple's length (None
    for a single leaf)."""
    if isinstance(tree, tuple):
        return list(tree), len(tree)
    if isinstance(tree, list):
        raise TypeError(f"scan: {what} must be a tensor, an array or a tuple of them, got a "
                        "list (a tuple keeps its structure fixed)")
    return [tree], None


def _flat(leaves: list[Any], what: str) -> list[Any]:
    """`leaves`, refused if one is itself a structure: scan takes flat tuples only."""
    for leaf in leaves:
        if isinstance(leaf, (tuple, list, dict)):
            raise TypeError(f"scan: {what} must be a tensor, an array, a number or a flat "
                            f"tuple of them, got a {type(leaf).__name__}"
                            + (" inside a tuple" if len(leaves) > 1 else ""))
    return leaves


def _unflatten(leaves: Sequence[Any], n: int | None) -> Any:
    return leaves[0] if n is None else tuple(leaves)


def _leaves(leaves: list[Any], tree: int | None, what: str) -> list[Tensor | np.ndarray]:
    """Each of the `leaves` of `what` (a tuple of them if `tree` is its length) as the loop
    takes it, an error naming its position."""
    return [_leaf(x, what if tree is None else f"{what}[{i}]")
            for i, x in enumerate(_flat(leaves, what))]


def _leaf(x: Any, what: str) -> Tensor | np.ndarray:
    if x is None:  # (NumPy's array of None is of dtype object)
        raise TypeError(f"scan: {what} is None, not an array: each part of init and xs is a "
                        "tensor, an array or a number" + ("; for a loop without per-step "
                        "input, pass xs=None and length=" if what.startswith("xs") else ""))
    if isinstance(x, Tensor):  # (an integer one: a compiled function's integer argument)
        return x if x.dtype.kind == "f" else astype(x, np.float64)
    array = plain_array(x, f"scan: {what}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"scan: {what} must hold numbers (real ones: integers, floats or "
                        f"bools), got dtype {array.dtype}")
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def _data(x: Tensor | np.ndarray) -> np.ndarray:
    return x._data if isinstance(x, Tensor) else x


class _Body:
    """`f` traced for one signature: the program, as two generated loops. `forward` runs the
    body's forward lines once per step, the carry in local variables, each y written into
    its stacked buffer; `backward` runs the body's backward lines once per step in reverse,
    passing the carry's cotangent on, stacking the xs' and adding up the invariants'."""

    def __init__(self, program: Program, n_carry: int, n_x: int, ys_tree: int | None,
                 has_y: tuple[bool, ...] | None):
        self.program = program
        self.n_carry, self.n_x, self.ys_tree = n_carry, n_x, ys_tree
        self.has_y = has_y  # which parts of y are not None (None: y is None)
        # Each call passes its own trace's tensors: the cache holds no reference to them.
        program.captured = [(value, None) for value, _ in program.captured]  # type: ignore[misc]
        # and its constants (the loops read them from `K`: never this trace's, by mistake)
        program.names.update((v.name, None) for v in program.constants)
        self.saves = bool(program.backward_steps)
        self.batched = _batched(program, n_carry, n_x) if self.saves else []
        # What the VJPs read per step that the loop stacks anyway (an invariant, a slice of
        # xs, an incoming carry, a y) is read there; only the rest is saved step by step.
        needed = _read_per_step(program, self.batched)
        where = {name: _stacked_as(program, n_carry, n_x, name) for name in program.saved
                 if name in needed}
        self.kept = [name for name in program.saved if name in needed and where[name] is None]
        self.reads = {name: w for name, w in where.items() if w is not None}
        wheres = [*self.reads.values(), *(w for b in self.batched for w in b.args)]
        # The ys kept with one more row, the carry's start, so that they are the stack of
        # every step's incoming carry too (as a hand-written S buffer): y m -> carry i.
        self.stacked = {index: next(i for i in range(n_carry)
                                    if program.outputs[i] is program.outputs[n_carry + index])
                        for kind, index in wheres if kind == "ys"}
        self.read_xs = {index for kind, index in wheres if kind == "xs"}
        self.read_ys = any(kind == "out" for kind, _ in wheres)
        program.names.update(AnomalyError=anomaly.AnomalyError, empty=np.empty,
                             zeros=np.zeros, fold=settle, fold_into=_fold_into, widen=_widen)
        self.forward = program.function("loop(A, order, length, saved, K, reverse)",
                                        self._forward_lines(), "scan loop")
        if self.saves:
            self.backwards: dict[tuple[bool, ...], Callable[..., list]] = {}
            self.carry_orders: dict[tuple[bool, ...], list[int]] = {}
            position = {v.index: i for i, v in enumerate(program.inputs)}
            self.grads = {position[v.index] for v in program.grad_inputs}
            self.deferred = {(b.step, b.operand): j for j, b in enumerate(self.batched)}
            self.cotangents, self.into = self._cotangents()

    def _forward_lines(self) -> list[str]:
        program, nc, nx = self.program, self.n_carry, self.n_x
        inputs, outputs = program.inputs, program.outputs
        lines = self._constant_lines()
        lines += [f"{v.name} = A[{i}]" for i, v in enumerate(inputs) if i < nc or i >= nc + nx]
        lines += [f"X{j} = A[{nc + j}]" for j in range(nx)]
        for m, y in enumerate(outputs[nc:]):
            shape, dtype = program._name(y.shape, "s"), program._name(y.dtype, "d")
            if m in self.stacked:  # the carry's start, then each step's: row k is step k's
                lines += [f"YS{m} = empty((length + 1, *{shape}), {dtype})",  # incoming carry
                          f"YS{m}[length if reverse else 0] = A[{self.stacked[m]}]",
                          f"Y{m} = YS{m}[:length] if reverse else YS{m}[1:]"]
            else:
                lines.append(f"Y{m} = empty((length, *{shape}), {dtype})")
        body = [f"{inputs[nc + j].name} = X{j}[k]" for j in range(nx)]
        into: dict[int, str] = {}  # a y its op computes straight into its buffer
        for m, y in enumerate(outputs[nc:]):
            if y.index not in into and program.writes_into(y):
                into[y.index] = f"Y{m}[k]"
        body += program.forward_lines(lambda v: None, inputs[nc + nx:], into)
        for m, y in enumerate(outputs[nc:]):  # later reads of y read its buffer, if it has
            if into.get(y.index) != f"Y{m}[k]":  # the buffer's layout (a C array's)
                body.append(f"Y{m}[k] = {y.name}")
                if y.c_order:
                    body.append(f"{y.name} = Y{m}[k]")
        if self.kept:
            body.append(f"saved[k] = [{', '.join(self.kept)}]")
        if nc:
            body.append(f"{', '.join(v.name for v in inputs[:nc])} = "
                        f"{', '.join(v.name for v in outputs[:nc])}")
        lines += ["try:", "    for k in order:"] + [" " * 8 + line for line in body]
        lines += ["except AnomalyError as error:",
                  "    raise AnomalyError(f'{error} (scan step {k})') from None"]
        carry = [v.name for v in inputs[:nc]]
        ys = [f"Y{m}" for m in range(len(outputs) - nc)]
        stacked = [f"YS{m}" for m in self.stacked]
        lines.append(f"return [{', '.join(carry + ys)}], [{', '.join(stacked)}]")
        return lines

    def _constant_lines(self) -> list[str]:
        """The constants, read from each call's `K` (what f read or made without a traced
        value: a call's own arrays and numbers, in the program's order)."""
        names = [v.name for v in self.program.constants]
        return [f"{', '.join(names)}, = K"] if names else []

    def backward(self, parts: np.ndarray, *args: Any) -> list:
        """The backward loop for the outputs' cotangents `parts`: a loop written for which
        ys have one (a y that is also the carry and has none adds nothing)."""
        given = tuple(parts[i] is not None for i in range(self.n_carry, len(parts)))
        loop = self.backwards.get(given)
        if loop is None:
            with _BODIES_LOCK:  # (names are numbered as they are made: one writer at a time)
                loop = self.backwards.get(given) or self.program.function(
                    "back(P, A, YS, Y, saved, chunks, length, free, K)",
                    self._backward_lines(given), "scan loop")
                self.backwards[given] = loop
        return loop(parts, *args)

    def _seeded_ys(self, given: tuple[bool, ...]) -> list[int]:
        """The ys whose cotangents a step of the backward loop starts from, in output order.
        An unrolled loop's sweep adds them to a state that is several ys last to first (the
        stacks made after the loop, the newest first), then the next step's contributions
        one by one, or, at the last step, after the final carry's cotangent (the carry used
        after the stacks were made)."""
        outputs, nc = self.program.outputs, self.n_carry
        carried = {v.index for v in outputs[:nc]}
        return [i for i in range(nc, len(outputs))
                if given[i - nc] or outputs[i].index not in carried]

    def carry_order(self, parts: np.ndarray) -> list[int]:
        """The carries a step of the backward loop for cotangents `parts` adds contributions
        to, one entry per contribution, in the order it adds them: the unrolled loop's
        sweep's (the body's ops from the last, each one's operands in order)."""
        program, nc = self.program, self.n_carry
        given = tuple(parts[i] is not None for i in range(nc, len(parts)))
        order = self.carry_orders.get(given)
        if order is None:
            seeded = [i for i in [*self._seeded_ys(given), *range(nc)]
                      if program.outputs[i].requires_grad]
            carry = {v.index: i for i, v in enumerate(program.inputs[:nc])}
            order = self.carry_orders[given] = [
                carry[x.index] for step in program._swept(seeded)
                for x, vjp in zip(step.inputs, step.vjps)
                if x.index in carry and x.requires_grad and vjp is not None]
        return order

    def _backward_lines(self, given: tuple[bool, ...]) -> list[str]:
        program, nc, nx = self.program, self.n_carry, self.n_x
        inputs, outputs = program.inputs, program.outputs
        grads, deferred, name = self.grads, self.deferred, program._name
        lines = self._constant_lines()
        ys = self._seeded_ys(given)
        for i, v in enumerate(outputs):
            shape, dtype = name(v.shape, "s"), name(v.dtype, "d")
            if i < nc:
                lines.append(f"C{i} = zeros({shape}, {dtype})")
                lines.append(f"GC{i} = C{i} if P[{i}] is None else P[{i}]")
            elif i in ys:
                lines.append(f"GY{i} = P[{i}]" if given[i - nc] else
                             f"ZY{i} = zeros({shape}, {dtype})")
        for j in range(nx):  # (every step writes its row: no zeros to write first)
            x = inputs[nc + j]
            lines.append(f"DX{j} = empty((length, *{name(x.shape, 's')}), "
                         f"{name(x.dtype, 'd')})" if nc + j in grads else f"DX{j} = None")
        invariants = [i for i in range(nc + nx, len(inputs)) if i in grads]
        lines += [f"I{i} = None; O{i} = False" for i in invariants]
        # The batched VJPs' cotangents and per-step operands, stacked a chunk of steps at a
        # time, row k - lo for step k (memory stays bounded; each VJP runs once a chunk).
        lines.append("CH = max(hi - lo for lo, hi, _ in chunks)")
        for j, b in enumerate(self.batched):
            if self.cotangents[j] == f"E{j}[:hi - lo]":  # its own stack
                lines.append(f"E{j} = empty((CH, *{name(b.shape, 's')}), {name(b.dtype, 'd')})")
            lines += [f"R{j}_{a} = empty((CH, *{name(shape, 's')}), {name(dtype, 'd')})"
                      for a, ((kind, _), shape, dtype) in enumerate(
                          zip(b.args, b.arg_shapes, b.arg_dtypes)) if kind == "saved"]
        lines += [f"{n} = A[{i}]" for n, (kind, i) in self.reads.items() if kind == "input"]
        body = ["n = k - lo"]
        if self.kept:
            body += ["s = saved[k]", "if free: saved[k] = None", f"{', '.join(self.kept)}, = s"]
        stacked = {m: s for s, m in enumerate(self.stacked)}
        body += [f"{n} = {_stack(kind, i, nc, stacked)}[k]"
                 for n, (kind, i) in self.reads.items() if kind != "input"]
        for j, b in enumerate(self.batched):  # the per-step operands, before backward frees
            body += [f"R{j}_{a}[n] = {program.saved[index]}"
                     for a, (kind, index) in enumerate(b.args) if kind == "saved"]
        seeds = [f"GC{i}" if i < nc else f"G{i}" if given[i - nc] else f"ZY{i}"
                 for i in range(len(outputs))]
        body += [f"G{i} = GY{i}[k]" for i in ys if given[i - nc]]
        # A state that is a y and the carry gets the next step's contributions after the
        # ys'; at the last step (the backward's first) the final carry's cotangent first.
        later = program.backward_lines(seeds, deferred, [*ys[::-1], *range(nc)], loop=True,
                                       into=self.into)
        last = program.backward_lines(seeds, deferred, [*range(nc), *ys[::-1]], loop=True,
                                      into=self.into)
        if last == later:
            body += later
        else:
            lines.append("LAST = chunks[0][2][0]")  # (the forward's last step)
            body += ["if k == LAST:", *("    " + line for line in last), "else:",
                     *("    " + line for line in later)]
        written = {int(target[2:]) for target in self.into.values()}
        contributed = program._contributions(deferred)
        for j in range(len(self.batched)):
            if self.cotangents[j] == f"E{j}[:hi - lo]":
                body += [f"if e{j}.dtype is not E{j}.dtype: E{j} = widen(E{j}, e{j})",
                         f"E{j}[n] = e{j}"]
        for i, v in enumerate(inputs):
            shape, dtype, g = name(v.shape, "s"), name(v.dtype, "d"), f"l{v.index}"
            if i < nc:  # (contributions kept apart: the previous step adds them in order)
                body.append(f"GC{i} = {g}" if i in grads else f"GC{i} = C{i}")
            elif i < nc + nx:
                if i in grads and i - nc not in written:  # (else a VJP wrote it there)
                    dx = f"DX{i - nc}"
                    body += [f"t = fold({g}, {shape}, {dtype})",
                             f"if t.dtype is not {dx}.dtype: {dx} = widen({dx}, t)",
                             f"{dx}[k] = t"]
            elif i in grads and v.index in contributed:
                body.append(f"I{i}, O{i} = fold_into({g}, {shape}, {dtype}, I{i}, O{i})")
        lines += ["try:", "    for lo, hi, steps in chunks:", "        for k in steps:"]
        lines += [" " * 12 + line for line in body]
        flush = self._flush_lines()
        handler = ["raise AnomalyError(f'{error} (scan step {k}, in backward)') from None"]
        if program.anomaly and flush:  # a check in the flush names the chunk's steps
            flush.insert(0, "k = None")
            handler = ["at = f'step {k}' if k is not None else f'steps {lo}..{hi - 1}'",
                       "raise AnomalyError(f'{error} (scan {at}, in backward)') from None"]
        lines += [" " * 8 + line for line in flush]
        lines += ["except AnomalyError as error:"] + ["    " + line for line in handler]
        # init's cotangent: the first step's contributions as they are (`Contributions`), for
        # the tape to add one by one, among other nodes' to the same tensor, as it adds the
        # unrolled loop's
        result = [f"GC{i}" if i in grads else "None" for i in range(nc)] + [
            f"DX{j}" for j in range(nx)] + [
            f"I{i}" if i in grads else "None" for i in range(nc + nx, len(inputs))]
        lines.append(f"return [{', '.join(result)}]")
        return lines

    def _cotangents(self) -> tuple[list[str], dict[tuple[int, int], str]]:
        """Where each batched VJP finds its chunk's stacked cotangents, and which VJPs write
        their result straight into the xs' stacked cotangents (`backward_lines`' `into`).

        A cotangent passed on as it is (by identity VJPs, to a value with no other
        contribution) is the same array all along: VJPs that read one share its stack, `E<j>`
        of the first, or the rows of `DX<j'>` where an x receives it. The VJP that computes
        such an x's cotangent writes it into the x's row, where `writes_into` allows."""
        program, nc, deferred, grads = self.program, self.n_carry, self.deferred, self.grads
        position = {id(step): k for k, step in enumerate(program.steps)}
        count = program._contributions(deferred)
        outputs = {v.index for v in program.outputs}
        passed: dict[int, Any] = {}  # value -> the step output whose cotangent it gets as is
        made: dict[int, tuple[int, int, Any]] = {}  # value -> (step, operand, VJP) giving it one
        for step in program.backward_steps:
            for i, (x, vjp) in enumerate(zip(step.inputs, step.vjps)):
                if not x.requires_grad or vjp is None or (position[id(step)], i) in deferred:
                    continue
                made[x.index] = (position[id(step)], i, vjp)
                if vjp is identity_vjp and x.shape == step.out.shape \
                        and x.dtype == step.out.dtype:
                    passed[x.index] = step.out

        def root(value: Any) -> Any:
            while count.get(value.index) == 1 and value.index not in outputs \
                    and value.index in passed:
                value = passed[value.index]
            return value

        xs: dict[int, int] = {}
        into: dict[tuple[int, int], str] = {}
        for p in range(nc, nc + self.n_x):
            x = program.inputs[p]
            if p not in grads:
                continue
            r = root(x)
            xs[r.index] = p - nc
            k, i, vjp = made.get(r.index, (-1, -1, None))
            # (`into` has the shape of the VJP's result, the step's output's: not where the
            # operand broadcasts, its result summed back after)
            if writes_into(vjp) and not program.anomaly and count.get(r.index) == 1 \
                    and r.index not in outputs \
                    and program.steps[k].out.shape == r.shape == x.shape != () \
                    and r.dtype == x.dtype == program.steps[k].out.dtype:
                into[k, i] = f"DX{p - nc}"
        found: list[str] = []
        first: dict[int, str] = {}
        for j, b in enumerate(self.batched):
            r = root(program.steps[b.step].out).index
            found.append(f"DX{xs[r]}[lo:hi]" if r in xs else
                         first.setdefault(r, f"E{j}[:hi - lo]"))
        return found, into

    def _flush_lines(self) -> list[str]:
        """Each batched VJP on the chunk's steps lo .. hi - 1, added to its invariant's sum:
        their operands stacked here, or the rows of the arrays that stack them already (`YS`,
        the incoming carries, row k step k's; the xs)."""
        program, name = self.program, self.program._name
        stacked = {m: s for s, m in enumerate(self.stacked)}
        lines = []
        for j, b in enumerate(self.batched):
            args = [f"R{j}_{a}[:hi - lo]" if kind == "saved" else f"A[{index}]"
                    if kind == "input" else "None" if index is None else index
                    if kind == "value" else f"{_stack(kind, index, self.n_carry, stacked)}[lo:hi]"
                    for a, (kind, index) in enumerate(b.args)]
            if b.options:
                args.append("**" + name(b.options, "o"))
            target, vjp = program.inputs[b.target], b.vjp
            if program.anomaly:  # its result checked as the per-step VJPs' are
                step = program.steps[b.step]
                vjp = anomaly._checked(_node(step), b.operand, vjp,  # type: ignore[arg-type]
                                       step.inputs[b.operand].shape)
            lines.append(f"t = {name(vjp, 'vjp')}({self.cotangents[j]}, None, {', '.join(args)})")
            # Summed down at once: a VJP may give back its stacked cotangents as they are
            # (a bias's), and the next chunk writes over them.
            lines.append(f"t = sum_to_shape(t, {name(target.shape, 's')})")
            lines.append(f"I{b.target}, O{b.target} = fold_into(t, {name(target.shape, 's')}, "
                         f"{name(target.dtype, 'd')}, I{b.target}, O{b.target})")
        return lines


class _Batched:
    """The VJP of a loop invariant (operand `operand` of the body's step `step`, input
    `target` of the loop), called once for all steps: on the steps' cotangents and per-step
    operands stacked on a new axis 0, the invariant as it is. For an op that computes on
    stacked operands as it does per step (`Op.batch`), that VJP's result, summed down to the
    invariant's shape, is the sum of the per-step ones: the same terms in another order (a
    layer's S^T D over all steps at once, as backpropagation through time by hand does)."""

    def __init__(self, program: Program, step: int, operand: int, n_carry: int, n_x: int):
        self.step, self.operand = step, operand
        s = program.steps[step]
        self.vjp, self.options = s.vjps[operand], s.options
        if s.op.user and self.vjp is not identity_vjp:
            self.vjp = _named_batch_errors(s.op, operand, self.vjp)
        self.shape, self.dtype = s.out.shape, s.out.dtype  # of a step's cotangent
        self.arg_shapes = [x.shape for x in s.inputs]
        self.arg_dtypes = [x.dtype for x in s.inputs]
        inputs = {v.index: i for i, v in enumerate(program.inputs)}
        self.target = inputs[s.inputs[operand].index]
        saved = {name: i for i, name in enumerate(program.saved)}
        reads = program._vjp_reads(s)[1:]
        if self.vjp is identity_vjp:  # (which reads nothing)
            reads = ["None"] * len(s.inputs)
        # Each argument: where the loop stacks it (`_stacked_as`), ("saved", index in a
        # step's saved list) to stack here, or ("value", a constant or None).
        self.args: list[tuple[str, Any]] = []
        for name, x in zip(reads, s.inputs):
            if name == "None" or x.is_constant:
                self.args.append(("value", None if name == "None" else x.name))
            else:
                self.args.append(_stacked_as(program, n_carry, n_x, name)
                                 or ("saved", saved[name]))


def _named_batch_errors(op: Op, i: int, vjp: Callable[..., Any]) -> Callable[..., Any]:
    """VJP `i` of a user's `op` as `_Batched` calls it, its failure naming the op and the
    contract of `batch=` that NumPy's message would not. (Unchecked where the sizes let a
    wrong VJP compute, as `a.T` of a stack of square steps does: `gradcheck` of a scan of
    the op at distinct sizes finds that.)"""

    def batched(g: Any, out: Any, *args: Any, **options: Any) -> Any:
        try:
            return vjp(g, out, *args, **options)
        except (ValueError, TypeError, IndexError) as error:
            shapes = ", ".join(str(np.shape(a)) for a in (g, *args) if a is not None)
            raise ValueError(
                f"{op.name}: VJP {i} failed on the steps' cotangents and operands stacked on a "
                f"new axis 0 (shapes {shapes}), as scan calls it once for all steps of a loop "
                f"for an op made with batch={op.batch!r} ({error}); it must compute on "
                "stacked operands as on one step's (swapaxes(a, -1, -2), not a.T, which "
                "reverses every axis), or leave batch out") from error

    return batched


def _read_per_step(program: Program, batched: list[_Batched]) -> set[str]:
    """The saved values the backward loop reads at each step: those of the VJPs it calls per
    step (not the batched ones, nor an identity, which reads nothing), and the operands the
    batched VJPs stack."""
    deferred = {(b.step, b.operand) for b in batched}
    needed = {program.saved[i] for b in batched for kind, i in b.args if kind == "saved"}
    position = {id(step): k for k, step in enumerate(program.steps)}
    for step in program.backward_steps:
        k = position[id(step)]
        if any(x.requires_grad and vjp is not None and (k, i) not in deferred
               and (vjp is not identity_vjp or program.anomaly)
               for i, (x, vjp) in enumerate(zip(step.inputs, step.vjps))):
            needed.update(name for name in program._vjp_reads(step) if name in program.saved)
    return needed


def _stacked_as(program: Program, n_carry: int, n_x: int, name: str) -> tuple[str, int] | None:
    """Where the loop has every step's value `name` already, if it does: ("input", i) the
    loop's operand i, an invariant; ("xs", j) the slices of xs j; ("ys", m) the incoming
    carry, which y m stacks; ("out", m) y m itself."""
    if name[0] != "v" or "_" in name:  # (a constant, or `record`'s copy of an array)
        return None
    index = int(name[1:])
    inputs = {v.index: i for i, v in enumerate(program.inputs)}
    ys = {v.index: m for m, v in reversed(list(enumerate(program.outputs[n_carry:])))}
    i = inputs.get(index, -1)
    if i >= _first_invariant(program):
        return "input", i
    if n_carry <= i < n_carry + n_x:
        return "xs", i - n_carry
    # (The stacks are C arrays: a value laid out otherwise is read where it is, so that a
    # VJP that reduces it adds in the loop's order.)
    if 0 <= i < n_carry and program.outputs[i].index in ys and sum(
            out is program.outputs[i] for out in program.outputs[:n_carry]) == 1 \
            and program.inputs[i].c_order and program.outputs[i].c_order:
        return "ys", ys[program.outputs[i].index]
    if i < 0 and index in ys and program.outputs[n_carry + ys[index]].c_order:
        return "out", ys[index]
    return None


def _stack(kind: str, index: int, n_carry: int, stacked: dict[int, int]) -> str:
    """The expression of the array that stacks a value along axis 0, row k step k's."""
    return (f"A[{n_carry + index}]" if kind == "xs" else f"YS[{stacked[index]}]"
            if kind == "ys" else f"Y[{index}]")


def _first_invariant(program: Program) -> int:
    return len(program.inputs) - len(program.captured)


def _batched(program: Program, n_carry: int, n_x: int) -> list[_Batched]:
    """The loop invariants' VJPs that one call for all steps can replace: the op computes on
    stacked operands as per step (`Op.batch`), reads neither its output nor a residual, and
    every per-step operand has the rank that batching needs."""
    invariant = {v.index for v in program.inputs[_first_invariant(program):]}
    varying = {v.index for v in program.inputs} - invariant
    for step in program.steps:
        if any(x.index in varying for x in step.inputs):
            varying.add(step.out.index)
    reached = {id(step) for step in program.backward_steps}
    plan = []
    for k, step in enumerate(program.steps):
        op, rank = step.op, len(step.out.shape)
        if id(step) not in reached:
            continue
        per_step = [(i, x) for i, x in enumerate(step.inputs) if x.index in varying]
        # What the VJPs read that the loop stacks step by step (a value the body computes,
        # from invariants alone too) must have the output's rank, so that its new axis 0
        # meets the cotangents' (a lower rank would broadcast a step's row on another axis).
        reads = program._vjp_reads(step)[1:]
        stacked_fit = all(len(y.shape) == rank for y, read in zip(step.inputs, reads)
                          if read != "None" and y.index not in invariant and not y.is_constant)
        for i, x in enumerate(step.inputs):
            if x.index not in invariant or not x.requires_grad or step.vjps[i] is None \
                    or not per_step:
                continue
            if step.vjps[i] is identity_vjp:  # the stacked cotangents, summed down: any op
                fits = True
            elif op.batch is None or op.residual or op.saves_output:
                fits = False
            elif op.batch == "elementwise":
                fits = stacked_fit
            else:  # the matrix on the right; the left operand (and addmm's c) stacked
                last = len(step.inputs) - 1
                fits = i == last and len(x.shape) == 2 and stacked_fit and any(
                    j == last - 1 for j, _ in per_step)
            if fits:
                plan.append(_Batched(program, k, i, n_carry, n_x))
    return plan


# The loops written so far, by what their programs depend on (`Trace.key`); the most recent.
_BODIES: OrderedDict[Any, _Body] = OrderedDict()
_BODIES_LOCK = threading.Lock()


def _traced(f: Callable, carry: list, carry_tree: int | None, xs: list, xs_tree: int | None,
            mode: int, grads: list[bool]) -> tuple[Trace, list, list, int | None, Any]:
    """`f` run on tracers of the carry (needing a gradient where `grads` says) and of one
    slice of each x: the trace, the carry's tracers, what f returned (the carry's parts,
    then the ys'), the structure of y and which parts of it are not None."""
    trace = Trace(recording=bool(mode & RECORDING), anomaly=bool(mode & ANOMALY),
                  reads_graph=True)
    carry_in = [trace.input(_data(c), g, raw=False) for c, g in zip(carry, grads)]
    x_in = [trace.input(_data(x)[0], isinstance(x, Tensor) and x._requires_grad, raw=False)
            for x in xs]
    with trace:
        out = f(_unflatten(carry_in, carry_tree), None if xs_tree == -1 else
                _unflatten(x_in, xs_tree))
        if not isinstance(out, tuple) or len(out) != 2:
            got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
            raise TypeError(f"scan: f must return (carry, y), got {got}")
        new_carry, y = out
        leaves, tree = _flatten(new_carry, "the carry f returns")
        if tree != carry_tree or len(leaves) != len(carry):
            raise ValueError(f"scan: f returned a carry of structure {_structure(tree, leaves)}"
                             f" for one of {_structure(carry_tree, carry)}")
        outs = []
        for i, (new, old) in enumerate(zip(leaves, carry_in)):
            new = _owned(new, trace)
            if new.shape != old.shape or new.dtype != old.dtype:
                raise ValueError(f"scan: carry {i} changed from shape {old.shape} {old.dtype} "
                                 f"to {new.shape} {new.dtype} in one step"
                                 f"{_promoted(trace, old.dtype, new.dtype)}; f must keep it")
            outs.append(new)
        y_leaves, y_tree = ([], None) if y is None else _flatten(y, "y")
        _flat(y_leaves, "y")
        has_y = None if y is None else tuple(v is not None for v in y_leaves)
        outs += [_owned(v, trace) for v in y_leaves if v is not None]
    return trace, carry_in, outs, y_tree, has_y


def _promoted(trace: Trace, old: np.dtype, new: np.dtype) -> str:
    """Where f first made a `new` value of `old` ones (a float32 carry times a float64
    constant), for the message of a carry whose dtype changed; "" if no op did."""
    if old == new:
        return ""
    for step in trace.steps:
        dtypes = [x.dtype for x in step.inputs]
        if step.out.dtype == new and old in dtypes:
            return (f" (first made {new} by '{step.op.name}' of "
                    f"{' and '.join(str(d) for d in dtypes)}: give f's constants and arrays "
                    f"the carry's dtype, or start the carry in {new})")
    return ""


def _decided_alike(first: Trace, later: Trace, first_outs: list, later_outs: list) -> None:
    """TraceError if f, traced again with the carry needing a gradient, read another answer
    of `.requires_grad` than at step 0 and did anything else with it: other ops, options,
    operands, constants, tensors read or results."""
    reads = [(v.index, read) for v, read in first.grad_reads]
    if reads == [(v.index, read) for v, read in later.grad_reads]:
        return  # (the same answers: the same decisions)
    if _decisions(first, first_outs) == _decisions(later, later_outs):
        return
    k = next((k for k, (a, b) in enumerate(zip(reads, later.grad_reads)) if a[1] != b[1]),
             min(len(reads), len(later.grad_reads)))
    value, read = (first.grad_reads if k < len(reads) else later.grad_reads)[k]
    read = read if k < len(reads) else not read  # (step 0's answer)
    carries = [v.index for v in first.inputs]
    what = (f"carry {carries.index(value.index)}" if value.index in carries
            else "a value computed from the carry")
    raise TraceError(
        f"scan: f read .requires_grad of {what} (shape {value.shape}), which is {read} at "
        f"step 0 and {not read} at the later steps (the carry comes to need a gradient "
        "through what the body reads), and f does something else for each answer (other "
        "ops, or constants: a random draw differs on each run): the Python loop would too, "
        "one traced body cannot. Decide on something else, or give init "
        "requires_grad=True (every step then reads True)")


def _decisions(trace: Trace, outs: list) -> tuple:
    """What f did while traced, its gradient flags aside: each op with its options and
    operands, the constants' values, the tensors read from outside, the results."""
    steps = tuple((s.op, frozen(s.options), tuple(x.index for x in s.inputs), s.numpy)
                  for s in trace.steps)
    constants = tuple(frozen(v.constant) for v in trace.values if v.is_constant)
    return (steps, constants, tuple(id(t) for _, t in trace.captured),
            tuple(trace.of[id(out)].index for out in outs))


def _body(f: Callable, carry: list, carry_tree: int | None, xs: list, xs_tree: int | None,
          mode: int) -> tuple[_Body, list[Tensor], tuple]:
    """`f` traced for this call, on tracers of the carry and of one slice of each x, and the
    loop written for its program; the tensors `f` read from outside, the loop's
    invariants; and its constants (the arrays and numbers it read or made). `f` runs on
    every call (once, not per step), so the loop always does what `f` does now (a weight or
    a number it reads rebound included); the loop is written once per distinct program
    (`Trace.key`), whatever its constants' values.

    A carry that needs no gradient at the start but comes to need one after a step (a zero
    initial state, a weight in the body) needs one throughout: a fixed point, marked on the
    trace without running f again. Unless f read whether a value needs one (`.requires_grad`,
    as `Tensor(c)` reads it to refuse a copy that would lose the gradient) and the answer
    changes, or a scan inside f was traced without it: then f is traced again with the
    carry's flags of the next step, until they hold still (the loop's steady state), so
    that what f decides on them is what the loop's later steps decide (an op's refusal
    raises as there); and if f, so traced, does anything else than at step 0, TraceError:
    one body cannot do both."""
    grads = [isinstance(c, Tensor) and c._requires_grad for c in carry]
    first = traced = _traced(f, carry, carry_tree, xs, xs_tree, mode, grads)
    while True:
        trace, carry_in, outs = traced[:3]
        values = [trace.of[id(t)] for t in carry_in]
        after = [g or trace.of[id(out)].requires_grad for g, out in zip(grads, outs)]
        if after == grads:
            break
        try:
            while new := [v for v, out in zip(values, outs[:len(carry)])
                          if trace.of[id(out)].requires_grad and not v.requires_grad]:
                trace.require_grad(new)
            stale = any(value.requires_grad != read for value, read in trace.grad_reads)
        except _Stale:  # a scan inside f, traced without that gradient
            stale = True
        if not stale:
            break
        if traced is not first:
            trace.results([], "scan: f")  # (its tracers spent: f may have kept one)
        grads = after
        traced = _traced(f, carry, carry_tree, xs, xs_tree, mode, grads)
        _decided_alike(first[0], traced[0], first[2], traced[2])
    trace, carry_in, outs, y_tree, has_y = traced
    if traced is not first:
        first[0].results([], "scan: f")
    # A carry that f returns laid out otherwise than it got it (`c.T`) gives the steps after
    # the first other layouts than the traced ones: the loop then chooses nothing by layout.
    if any(new._data.strides != old._data.strides for new, old in zip(outs, carry_in)):
        for value in trace.values:
            value.c_order = False
    results = trace.results(outs, "scan: f")
    key = (carry_tree, len(carry), len(xs), y_tree, has_y, trace.key(results))
    captured = [t for _, t in trace.captured]
    constants = _Owned(v.constant for v in trace.values if v.is_constant)
    body = _BODIES.get(key)
    if body is None:
        body = _Body(Program(trace, results), len(carry), len(xs), y_tree, has_y)
        with _BODIES_LOCK:
            _BODIES[key] = body
            while len(_BODIES) > 64:
                _BODIES.popitem(last=False)
    return body, captured, constants


class _Owned(tuple):
    """A trace's constants: its own copies (`Trace.operand`), which nothing else holds, so the
    loop's node keeps them as they are (`kept_options` copies the arrays of a plain tuple)."""

    __slots__ = ()


def _owned(x: Any, trace: Trace) -> Tensor:
    """`x` as an op output of this trace: an input, a constant or a number passed on as is
    becomes a copy (`_copy`), which a program can return."""
    value = trace.of.get(id(x)) if isinstance(x, Tensor) else None
    if value is None or value in trace.inputs or value.is_constant:
        x = _copy(x if isinstance(x, Tensor) else _leaf(x, "y"))
    return x


# A copy, its gradient passed on as it comes (as the loop passes on the value itself): not
# `astype`, whose VJP converts the gradient to the value's dtype, a float16 carry's to inf.
_copy = defop("copy", np.copy, (identity_vjp,), saves="nothing", register=False)


def _structure(tree: int | None, leaves: Sequence[Any]) -> str:
    return "a single tensor" if tree is None else f"a tuple of {len(leaves)}"


class _Run:
    """One call of the loop: what its backward needs, and that backward's last result."""

    __slots__ = ("saved", "stacked", "ys", "shapes", "dtypes", "invariants", "swept",
                 "released")

    def __init__(self, saved: list, stacked: list, ys: list, arrays: Sequence[np.ndarray],
                 body: _Body):
        self.saved = saved  # each step's values the body's VJPs read that no stack holds
        self.stacked = stacked  # the ys that stack the incoming carries (`_Body.stacked`)
        self.ys = ys  # the ys, if the VJPs read them
        self.shapes = [a.shape for a in arrays]
        self.dtypes = [a.dtype for a in arrays]
        # The loop's operands a backward reads: the invariants, and the xs the VJPs read
        # (not init, not the other xs, which the node does not keep either).
        nc, nx = body.n_carry, body.n_x
        self.invariants = tuple(a if i >= nc + nx or i >= nc and i - nc in body.read_xs
                                else None for i, a in enumerate(arrays))
        # (the cotangent array of the last sweep, the backward loop's results for it): one
        # object, written and read in one step, as threads may sweep the node at once
        self.swept: tuple[Any, list] = (None, [])
        self.released = False  # by a backward that freed what it read (maybe part-way)


def _forward(*arrays: Any, body: _Body, length: int, reverse: bool, constants: tuple) -> tuple:
    """The loop: the final carry and the stacked ys as an object array, and the call's
    `_Run` (each step's values the body's VJPs read)."""
    saved: list[Any] = [None] * length if body.kept else []
    order = range(length - 1, -1, -1) if reverse else range(length)
    outs, stacked = body.forward(arrays, order, length, saved, constants, reverse)
    packed = np.empty(len(outs), object)
    for i, value in enumerate(outs):
        packed[i] = value
    return packed, _Run(saved, stacked, outs[body.n_carry:] if body.read_ys else [], arrays,
                        body)


def _vjps(arrays: Sequence[Any], options: dict[str, Any], inputs: Sequence[Any]) -> list:
    """One VJP per operand, all served by one run of the backward loop per sweep; `_Stale`
    for an operand whose gradient the body was traced without (a scan inside a scan's
    body, given a carry that came to need a gradient after the enclosing trace's step)."""
    body = options["body"]
    if any(x is not None and not v.requires_grad for x, v in zip(inputs, body.program.inputs)):
        raise _Stale
    # (none for an operand that no output of the body reaches: an xs it ignores, a carry
    # it replaces before reading)
    vjps: list[Any] = [None if x is None or i not in body.grads else _SHARES[i]
                       if i < len(_SHARES) else _Share(i) for i, x in enumerate(inputs)]
    # Carries passed one tensor (`init=(h, h)`): the first's VJP hands on all their
    # contributions, in the order the unrolled loop's sweep adds them to it.
    carries = [i for i in range(body.n_carry) if vjps[i] is not None]
    for n, i in enumerate(carries):
        aliases = tuple(j for j in carries[n + 1:] if inputs[j] is inputs[i])
        if aliases and vjps[i] is not None:
            vjps[i] = _Share(i, aliases)
            for j in aliases:
                vjps[j] = None
    return vjps


class _Stale(Exception):
    """A body traced before one of its operands needed a gradient: f is traced again."""


class _Share:
    """Operand i's VJP: its part of the backward loop's results, run once per sweep (a
    sweep densifies a new cotangent array for the loop's node: `_Run.swept`)."""

    __slots__ = ("i", "aliases")

    def __init__(self, i: int, aliases: tuple[int, ...] = ()):
        self.i = i
        self.aliases = aliases  # later carries given the same tensor: none of their own

    def __call__(self, g: np.ndarray, run: _Run, *arrays: Any, body: _Body, length: int,
                 reverse: bool, constants: tuple) -> Any:
        seed, grads = run.swept
        if seed is not g:
            grads = _backward(g, run, body, length, reverse, constants)
            run.swept = (g, grads)
        if self.aliases:
            return _interleaved(grads, (self.i, *self.aliases), body.carry_order(g))
        return grads[self.i]


def _interleaved(grads: list, carries: tuple[int, ...], order: list[int]) -> Contributions:
    """The contributions to `carries` (one tensor's) as one list, in `order` (one entry per
    contribution, naming its carry; a carry's one contribution may itself be a list)."""
    parts = {i: iter(grads[i] if order.count(i) > 1 else (grads[i],))
             for i in carries if grads[i] is not None}
    return Contributions(next(parts[i]) for i in order if i in parts)


_SHARES = [_Share(i) for i in range(16)]


def _unrecorded_part(packed: Tensor, i: int) -> Tensor:
    with no_grad():
        return _part(packed, index=i)


def _backward(parts: np.ndarray, run: _Run, body: _Body, length: int, reverse: bool,
              constants: tuple) -> list:
    """The backward loop: the cotangent of each operand (None for an invariant that none
    reached)."""
    if run.released:
        raise tape.released("backward", "scan")
    free = run.released = not tape.retaining.get()
    if reverse:  # backward from the first step: chunks lo .. lo + CH - 1, each upwards
        chunks = [(lo, min(lo + _CHUNK, length), range(lo, min(lo + _CHUNK, length)))
                  for lo in range(0, length, _CHUNK)]
    else:  # from the last: chunks hi - CH .. hi - 1, each downwards
        chunks = [(max(hi - _CHUNK, 0), hi, range(hi - 1, max(hi - _CHUNK, 0) - 1, -1))
                  for hi in range(length, 0, -_CHUNK)]
    incoming = [ys[1:] if reverse else ys[:-1] for ys in run.stacked]  # row k: step k's
    grads = body.backward(parts, run.invariants, incoming, run.ys, run.saved, chunks, length,
                          free, constants)
    if free:
        run.saved = run.stacked = run.ys = []
    for i in range(body.n_carry + body.n_x, len(grads)):
        if grads[i] is not None and grads[i].shape != run.shapes[i]:
            grads[i] = sum_to_shape(grads[i], run.shapes[i])
    return grads


# How many steps a batched loop-invariant VJP takes at once: fewer calls, bounded memory.
_CHUNK = 64


def _widen(stack: np.ndarray, g: np.ndarray) -> np.ndarray:
    """`stack`, in a dtype that holds `g` too: the steps' cotangents take the dtypes the
    VJPs give them (a float16 value's may be float64), which the loop passes on as they are;
    a stack made in the value's dtype would round them (overflow them) instead. The rows
    written so far convert exactly."""
    wider = np.result_type(stack.dtype, g.dtype)
    return stack if wider == stack.dtype else stack.astype(wider)


def _fold_into(g: Any, shape: tuple, dtype: np.dtype, current: Any,
               owned: bool) -> tuple[np.ndarray, bool]:
    """Contributions `g` added to `current` (None for none yet) by the tape's rule: the sum,
    and whether this loop allocated it (`tape.accumulate`)."""
    for part in (g if type(g) is Contributions else (g,)):
        current, owned = accumulate(current, part, owned, shape, dtype)
    return current, owned


# Its operands are kept in the tape's sense (copied if arrays, marked shared if tensors) but
# its node holds only the residual, a `_Run`: `kept=()`.
_SCAN = Op("scan", _forward, _vjps, Domain("untested"), True, False, (), True)
_record_scan = recorder(_SCAN)


def scan(f: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None,
         length: int | None = None, reverse: bool = False) -> tuple[Any, Any]:
    """Loop `carry, y = f(carry, x)` over the slices `x = xs[k]` (k = 0 .. L-1, or from the
    last when `reverse`), starting from `init`; return the final carry and the ys stacked
    on a new axis 0, as `jax.lax.scan`.

    The carry is a Tensor, an array or a number, or a tuple of them, and keeps its
    structure, shapes and dtypes (else a ValueError names both); `xs` likewise (each sliced
    along axis 0), or None with `length` given. `f` gets the carry and each x as tensors (a
    NumPy array's as `Tensor` makes it: their methods are the engine's ops, a float16 sum
    in float32, where a NumPy slice's sums in float16). `y`, or a part of a tuple `y`, may
    be None (ys, or that part, is then None); one computed from values that need no
    gradient needs none, as the loop's (and is not checked in `detect_anomaly()` mode, as
    the loop's ys are not, where those that need one are checked step by step, naming the
    body's op and the step). `f` is traced once per call (or again, below), its Python
    never run per step, so Python that decides on a traced value raises `TraceError`, and
    what it reads from outside is current; it may read tensors from outside (a module's
    weights, a tensor computed before the loop), whose gradients add up over the steps.
    Where the carry comes to need a gradient after the first step, f reading
    `c.requires_grad` is traced again with the later steps' flags (an op refusing them
    raises as in the loop), and raises `TraceError` if it does anything else for step 0's
    (or draws other random numbers on its second run). An op's exception on step 0's
    values that f catches would fix that branch for every step: `TraceError` (an uncaught
    one reaches the caller as raised), and a try/except around an op is never replayed (a
    later step whose values make the op raise raises, where the loop would take the except
    branch); NumPy's error state (`np.errstate`) is the caller's for every step: set
    inside f, it is refused (`TraceError`).
    Backward runs the body's own VJPs in reverse per step: nothing recurrence-specific is
    written anywhere. An `f` that is not callable, a `length` that is not an integer (a
    float, a bool) are TypeErrors; a length < 1, or another than xs's, a ValueError.
    """
    if not callable(f):
        raise TypeError(f"scan: expected a function as f, got {type(f).__name__}")
    if length is not None and (isinstance(length, bool)
                               or not isinstance(length, numbers.Integral)):
        raise TypeError(f"scan: length must be an integer (the number of steps) or None, got "
                        f"{type(length).__name__} {length!r}")
    carry, carry_tree = _flatten(init, "init")
    carry = _leaves(carry, carry_tree, "init")
    if xs is None or type(xs) is tuple and not xs:  # no per-step input: None, or ()
        xs_tree0: int | None = -1 if xs is None else 0
        if length is None or length < 1:
            raise ValueError(f"scan: without xs, length must be an integer >= 1 (the number of "
                             f"steps; a loop of none is refused), got {length!r}")
        length = int(length)
        x_leaves: list[Any] = []
        xs_tree: int | None = xs_tree0
    else:
        x_leaves, xs_tree = _flatten(xs, "xs")
        x_leaves = _leaves(x_leaves, xs_tree, "xs")
        lengths = {_data(x).shape[:1] for x in x_leaves}
        if any(_data(x).ndim == 0 for x in x_leaves):
            raise ValueError("scan: every xs needs a leading axis to slice the steps from, got "
                             f"shapes {[_data(x).shape for x in x_leaves]} (a 0-d one has none)")
        if len(lengths) != 1:
            raise ValueError("scan: every xs must have the same leading axis length, got "
                             f"shapes {[_data(x).shape for x in x_leaves]}")
        found = lengths.pop()[0]
        if length is not None and length != found:
            raise ValueError(f"scan: length {length} but xs of length {found}")
        length = found
    if length == 0:
        raise ValueError("scan: xs of length 0: a loop of no steps is refused (the body is "
                         "traced on one step of xs, and there is none); give at least one step")
    body, captured, constants = _body(f, carry, carry_tree, x_leaves, xs_tree, current_mode())
    operands = [*carry, *x_leaves, *captured]
    with contextlib.nullcontext() if body.saves else no_grad():  # no gradient path: no node
        packed = _record_scan(*operands, body=body, length=length, reverse=reverse,
                              constants=constants)
    # An output no gradient reaches (a y of values that need none) needs none, as the
    # loop's: not a part of the node, so that anomaly mode checks it no more than the loop.
    outs = [_part(packed, index=i) if v.requires_grad else _unrecorded_part(packed, i)
            for i, v in enumerate(body.program.outputs)]
    # The graph keeps the ys' arrays (a step's VJPs may read a y), and a carry may be a row
    # of a y's stack: each output is copied before it is written to (copy-on-write).
    for out in outs:
        out._shared = True
    nc = len(carry)
    stacked = iter(outs[nc:])  # (a part of y that is None has no ys: None)
    ys = None if body.has_y is None else _unflatten(
        [next(stacked) if present else None for present in body.has_y], body.ys_tree)
    return _unflatten(outs[:nc], carry_tree), ys
