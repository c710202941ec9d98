"""Building blocks for models: `Parameter`, `Module`, `Linear`, and initialisers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .ops import addmm, matmul
from .tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module learns: it always requires grad."""

    __slots__ = ()

    def __init__(self, data: Any):
        super().__init__(data, requires_grad=True)

    def __repr__(self) -> str:
        return "Parameter" + super().__repr__()[len("Tensor"):]


# Changes whenever an attribute of any Module is set or deleted: a compiled function that read
# a module's parameters traces again rather than replay a tensor no longer there.
_generations = itertools.count(1)
generation = 0


class Module:
    """Base class of models. Parameters and sub-Modules held in attributes, also inside
    lists, tuples and dicts, are found by `named_parameters()`; calling the module calls
    `forward`."""

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        global generation
        generation = next(_generations)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        global generation
        generation = next(_generations)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        forward = getattr(self, "forward", None)
        if forward is None:
            raise TypeError(f"{type(self).__name__} cannot be called: it defines no forward()")
        return forward(*args, **kwargs)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) for each parameter once, in the order they were set."""
        seen: set[int] = set()
        for name, p in self._found(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def zero_grad(self) -> None:
        for _, p in self._found(""):  # every training step: a list, no generators
            p.grad = None

    def _found(self, prefix: str) -> list[tuple[str, Parameter]]:
        found: list[tuple[str, Parameter]] = []
        _walk(vars(self), prefix, {id(self)}, found)
        return found

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter's value, by name."""
        return {name: p._data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy values into the parameters, in place. Every name, shape and dtype is checked
        first, so a mismatch changes nothing."""
        params = dict(self.named_parameters())
        problems = _mismatches(params, state)
        if problems:
            raise ValueError(f"load_state_dict: state does not match {type(self).__name__}: "
                             + "; ".join(problems))
        for name, p in params.items():
            np.copyto(p.data, np.asarray(state[name]), casting="same_kind")


def _walk(value: Any, prefix: str, modules: set[int],
          found: list[tuple[str, Parameter]]) -> None:
    """Append the parameters under `value` to `found`, with their names (a parameter held
    twice appears twice); `modules` holds the Modules on the way down, so that a module
    referring back to itself or a parent (a `parent` attribute, say) is not entered again."""
    if isinstance(value, Parameter):
        found.append((prefix, value))
    elif isinstance(value, Module):
        if id(value) not in modules:
            _walk(vars(value), prefix, modules | {id(value)}, found)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _walk(item, f"{prefix}.{key}" if prefix else str(key), modules, found)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _walk(item, f"{prefix}.{i}" if prefix else str(i), modules, found)


def _mismatches(params: Mapping[str, Parameter], state: Mapping[str, Any]) -> list[str]:
    problems = []
    missing = [n for n in params if n not in state]
    unexpected = [n for n in state if n not in params]
    if missing:
        problems.append(f"missing {missing}")
    if unexpected:
        problems.append(f"unexpected {unexpected}")
    for name, p in params.items():
        if name not in state:
            continue
        value = np.asarray(state[name])
        if value.shape != p.shape:
            problems.append(f"'{name}' has shape {value.shape}, expected {p.shape}")
        elif not np.can_cast(value.dtype, p.dtype, casting="same_kind"):
            # checked here too, or np.copyto would fail after copying the entries before it
            problems.append(f"'{name}' has dtype {value.dtype}, which cannot be cast to {p.dtype}")
    return problems


def glorot_uniform(rng: np.random.Generator, n_in: int, n_out: int,
                   dtype: Any = np.float64) -> np.ndarray:
    """Weights uniform in +-sqrt(6 / (n_in + n_out)), shape (n_in, n_out) (Glorot & Bengio)."""
    limit = math.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, size=(n_in, n_out)).astype(dtype)


def orthogonal(rng: np.random.Generator, n_in: int, n_out: int,
               dtype: Any = np.float64) -> np.ndarray:
    """A random (n_in, n_out) matrix with orthonormal rows or columns: Q of a Gaussian's QR,
    signs fixed so that it is uniformly distributed (Saxe et al.; Keras's recurrent default)."""
    big, small = max(n_in, n_out), min(n_in, n_out)
    q, r = np.linalg.qr(rng.standard_normal((big, small)))
    q = q * np.sign(np.diag(r))
    return (q if n_in >= n_out else q.T).astype(dtype)


class Linear(Module):
    """y = x W + b on the last axis of `x` (any rank), W of shape (n_in, n_out).

    W is drawn by `init(rng, n_in, n_out, dtype)` (Glorot-uniform unless told otherwise) from
    `rng`, a fresh unseeded generator if none is given; b starts at zero.
    """

    def __init__(self, n_in: int, n_out: int, bias: bool = True, *,
                 rng: np.random.Generator | None = None, dtype: Any = np.float64,
                 init: Callable[..., np.ndarray] = glorot_uniform):
        self.n_in, self.n_out = n_in, n_out
        rng = np.random.default_rng() if rng is None else rng
        self.weight = Parameter(init(rng, n_in, n_out, dtype))
        self.bias = Parameter(np.zeros(n_out, dtype)) if bias else None

    def forward(self, x: Any) -> Tensor:
        shape = x.shape if isinstance(x, Tensor) else np.shape(x)
        if shape[-1:] != (self.n_in,):
            raise ValueError(f"Linear: expected input whose last axis has {self.n_in} "
                             f"elements, got shape {shape}")
        return matmul(x, self.weight) if self.bias is None else addmm(self.bias, x, self.weight)

    def __repr__(self) -> str:
        return f"Linear({self.n_in}, {self.n_out}, bias={self.bias is not None})"
