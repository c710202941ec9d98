"""Optimizer updates in plain NumPy, as a hand-writer who cares about speed writes them: the
hand-written steps' updates (`optim`'s rules without its shell: no gradient checks, no
rollback, no copies in and out when the model keeps its arrays end to end).

Each maker takes the parameters (objects with `.data` and `.grad`, such as
`minigrad.models.reference.Param`) and the rule's hyperparameters, and returns
`step(closure) -> loss`: the closure computes the loss and leaves the gradients in `.grad`,
the step updates `.data` in place. Given `FlatBuffers` instead (a hand-written model's flat
parameter and gradient buffers), the closure leaves the gradient in the gradient buffer and
the step updates the parameter buffer: no `.data` or `.grad` is looked at, as in a
hand-writer's own loop (the benchmark's hand-written steps run so).

Each computes what the `optim` rule of the same name computes, in the same order, so the
trajectories agree bit for bit (`tests/test_benchmarks.py`, `tests/test_optim_benchmark.py`).

Every rule is elementwise, so the update runs once over flat buffers, a few in-place NumPy
calls (`out=` everywhere, the rule's state and temporaries allocated once) whatever the
number of parameters:

- the parameters of one dtype are used end to end: if their arrays already tile one flat
  buffer (`end_to_end` lays out the hand-written models' parameters so), that buffer is
  updated as it is; otherwise the maker lays them into one and sets each `.data` to its
  view of it (same values; a `.data` replaced later is laid in again at the next step);
- the gradients likewise: if the `.grad` arrays tile one flat buffer (the hand-written
  models write theirs into views of one), the update reads it as it is; otherwise each is
  copied into the update's own flat buffer (one small copy per parameter, as `optim` does).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["FlatBuffers", "Update", "end_to_end", "plain_rmsprop_nesterov", "plain_rprop",
           "plain_sgd", "tiled"]

Closure = Callable[[], float]
Update = Callable[[Closure], float]


def end_to_end(shapes: Sequence[tuple[int, ...]], dtype: Any) -> tuple[np.ndarray,
                                                                        list[np.ndarray]]:
    """A new flat buffer of `dtype` and a view of it for each of `shapes`, laid end to end
    in order (what `tiled` recognises)."""
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
    flat = np.empty(sum(sizes), dtype)
    ends = np.cumsum([0, *sizes]).tolist()
    return flat, [flat[a:b].reshape(shape)
                  for a, b, shape in zip(ends, ends[1:], shapes, strict=False)]


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def tiled(arrays: Sequence[Any]) -> np.ndarray | None:
    """The 1-D array that `arrays` tile, each a C-contiguous view of one flat buffer right
    after the one before it; None if they do not (or are not all arrays)."""
    first = arrays[0]
    if type(first) is not np.ndarray:
        return None
    base = first.base
    if type(base) is not np.ndarray or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    origin, dtype = _address(base), base.dtype
    position = start = _address(first)
    for a in arrays:
        if type(a) is not np.ndarray or a.base is not base or a.dtype != dtype \
                or not a.flags.c_contiguous or _address(a) != position:
            return None
        position += a.nbytes
    return base[(start - origin) // dtype.itemsize:(position - origin) // dtype.itemsize]


class _Flat:
    """Parameters of one dtype end to end: their flat data (updated in place), and their
    flat gradient at each step."""

    def __init__(self, params: Sequence[Any], positions: Sequence[int]) -> None:
        self.params, self.positions = list(params), list(positions)
        arrays = [p.data for p in self.params]
        shapes = [a.shape for a in arrays]
        data = tiled(arrays)
        if data is None or not data.flags.writeable:
            data, views = end_to_end(shapes, arrays[0].dtype)
            for p, view in zip(self.params, views, strict=True):
                view[...] = p.data
                p.data = view
        self.data = data
        self.views = [p.data for p in self.params]
        self.own_gradient, self.gradient_views = end_to_end(shapes, data.dtype)
        self.seen: list[Any] = []             # the `.grad` arrays of the last step
        self.seen_gradient = self.own_gradient

    def lay(self) -> np.ndarray:
        """The flat data, with any `.data` replaced since (a model's `load_parameters`)
        copied in and set back to its view."""
        for p, view in zip(self.params, self.views, strict=True):
            if p.data is not view:
                view[...] = p.data
                p.data = view
        return self.data

    def gradient(self) -> np.ndarray:
        """This step's gradient, flat: the buffer the `.grad` arrays tile (the model's own),
        else our buffer with each copied in. Lays in any `.data` the closure replaced."""
        self.lay()
        grads = [p.grad for p in self.params]
        if len(grads) == len(self.seen) and all(map(operator.is_, grads, self.seen)):
            return self.seen_gradient
        flat = tiled(grads)
        if flat is None or flat.dtype != self.data.dtype or any(
                g.shape != view.shape for g, view in zip(grads, self.views, strict=True)):
            for j, g, view in zip(self.positions, grads, self.gradient_views, strict=True):
                if getattr(g, "shape", None) != view.shape:
                    raise ValueError(f"plain update: parameter {j} of shape {view.shape} has "
                                     f"gradient {type(g).__name__} of shape "
                                     f"{getattr(g, 'shape', None)}")
                view[...] = g
            return self.own_gradient
        self.seen, self.seen_gradient = grads, flat
        return flat


class FlatBuffers:
    """A model's parameters and gradients as the two flat buffers it keeps them in (a
    hand-written model's `flat_parameters`, `flat_gradients`): the update runs on them as
    they are, with no `.data` or `.grad` to look at. What a hand-writer's own loop does."""

    def __init__(self, data: np.ndarray, gradient: np.ndarray) -> None:
        if data.ndim != 1 or gradient.shape != data.shape or gradient.dtype != data.dtype:
            raise ValueError(f"FlatBuffers: parameters {data.dtype}{data.shape} and gradient "
                             f"{gradient.dtype}{gradient.shape} must be 1-D, of one shape "
                             "and dtype")
        self.data, self._gradient = data, gradient

    def lay(self) -> np.ndarray:
        return self.data

    def gradient(self) -> np.ndarray:
        return self._gradient


def _flats(params: Sequence[Any] | FlatBuffers) -> list[_Flat] | list[FlatBuffers]:
    """The parameters end to end, one `_Flat` per dtype; flat buffers as they are."""
    if isinstance(params, FlatBuffers):
        return [params]
    by_dtype: dict[np.dtype, list[tuple[int, Any]]] = {}
    for j, p in enumerate(params):
        by_dtype.setdefault(p.data.dtype, []).append((j, p))
    return [_Flat([p for _, p in run], [j for j, _ in run]) for run in by_dtype.values()]


def plain_rmsprop_nesterov(params: Sequence[Any] | FlatBuffers, lr: float, decay: float,
                           momentum: float, eps: float) -> Update:
    """The tutorial's RMSProp-Nesterov on the flat buffers: V = momentum V, P += V (the
    look-ahead point), take the gradient g there, MA = decay MA + (1 - decay) g^2,
    change = lr g / (sqrt(MA) + eps), V -= change, P -= change."""
    flats = _flats(params)
    velocity = [np.zeros_like(f.data) for f in flats]
    mean_square = [np.zeros_like(f.data) for f in flats]
    change = [np.empty_like(f.data) for f in flats]
    work = [np.empty_like(f.data) for f in flats]

    def step(closure: Closure) -> float:
        for f, v in zip(flats, velocity, strict=True):
            np.multiply(v, momentum, out=v)
            np.add(f.lay(), v, out=f.data)
        loss = closure()
        for f, v, ma, c, w in zip(flats, velocity, mean_square, change, work, strict=True):
            g = f.gradient()
            np.multiply(g, 1 - decay, out=w)
            np.multiply(w, g, out=w)
            np.multiply(ma, decay, out=ma)
            np.add(ma, w, out=ma)
            np.multiply(g, lr, out=c)
            np.sqrt(ma, out=w)
            np.add(w, eps, out=w)
            np.divide(c, w, out=c)
            np.subtract(v, c, out=v)
            np.subtract(f.data, c, out=f.data)
        return loss

    return step


def plain_rprop(params: Sequence[Any] | FlatBuffers, eta_plus: float = 1.2, eta_minus: float = 0.5,
                step_init: float = 0.001, step_min: float = 1e-6,
                step_max: float = 50.0) -> Update:
    """Rprop- per element (`optim.RProp`'s rule and defaults) on the flat buffers: with
    s = sign(g), Delta grows by eta_plus where s agrees with the previous sign, shrinks by
    eta_minus where it flipped, stays elsewhere, and is clipped to [step_min, step_max];
    P -= s Delta."""
    flats = _flats(params)
    step_size = [np.full_like(f.data, step_init) for f in flats]
    signs = [[np.zeros_like(f.data), np.empty_like(f.data)] for f in flats]  # previous, new
    agreement = [np.empty_like(f.data) for f in flats]
    mask = [np.empty(f.data.shape, bool) for f in flats]

    def step(closure: Closure) -> float:
        loss = closure()
        for f, delta, pair, a, m in zip(flats, step_size, signs, agreement, mask, strict=True):
            previous, s = pair
            np.sign(f.gradient(), out=s)
            np.multiply(s, previous, out=a)
            np.greater(a, 0.0, out=m)
            np.multiply(delta, eta_plus, out=delta, where=m)
            np.less(a, 0.0, out=m)
            np.multiply(delta, eta_minus, out=delta, where=m)
            np.maximum(delta, step_min, out=delta)
            np.minimum(delta, step_max, out=delta)
            np.multiply(s, delta, out=a)
            np.subtract(f.data, a, out=f.data)
            pair.reverse()  # s is the previous sign of the next step
        return loss

    return step


def plain_sgd(params: Sequence[Any] | FlatBuffers, lr: float) -> Update:
    """Gradient descent on the flat buffers: P -= lr g."""
    flats = _flats(params)
    change = [np.empty_like(f.data) for f in flats]

    def step(closure: Closure) -> float:
        loss = closure()
        for f, c in zip(flats, change, strict=True):
            np.multiply(f.gradient(), lr, out=c)
            np.subtract(f.data, c, out=f.data)
        return loss

    return step
