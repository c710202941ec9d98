"""Building blocks for models: `Parameter`, `Module`, `Linear`, `Sequential`, the recurrent
cells `RNNCell`, `GRUCell` and `LSTMCell`, and initialisers."""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import reprlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # (NumPy < 2)
    from numpy import byte_bounds  # type: ignore[attr-defined,no-redef]

from .modes import TRACING, TraceError, current_mode
from .ops import addmm, astype, matmul, relu, sigmoid, split, tanh
from .tensor import Tensor, plain_array


class Parameter(Tensor):
    """A Tensor that a Module learns: it requires grad from the start (set `requires_grad`
    to False to freeze it: backward then leaves its `.grad` as it was, None after
    `zero_grad`, and optimizers skip a parameter whose `.grad` is None)."""

    __slots__ = ()

    def __init__(self, data: Any):
        super().__init__(data, requires_grad=True)

    def __repr__(self) -> str:
        return "Parameter" + super().__repr__()[len("Tensor"):]


# Changes whenever an attribute of any Module is set or deleted: a compiled function that
# read a module's attributes traces again rather than replay a tensor, array or number no
# longer there. Also while a scan's f is traced, which it is on every call: its sets are
# for good. Not while a compiled function is traced (`compiling`): what it sets then (a call
# counter) is a side effect of its trace, which its replays do not repeat, and moving the
# generation would have its other signatures, and the model's other compiled functions,
# trace again on every call.
_generations = itertools.count(1)
generation = 0
compiling: ContextVar[bool] = ContextVar("minigrad_compiling", default=False)


def _move() -> None:
    if not compiling.get():
        global generation
        generation = next(_generations)


class Module:
    """Base class of models. Parameters and sub-Modules held in attributes, also inside
    lists, tuples and dicts, are found by `named_parameters()`; calling the module calls
    `forward`. An attribute that holds a Parameter takes only a Parameter or None, as in
    PyTorch (TypeError): a Tensor in its place (`lin.weight = lin.weight * 2`) would drop
    it from `parameters()`, and training would silently stop updating it. Change its
    values through `.data`, or `del` the attribute first to hold something else there.
    So does a layer's optional parameter set to None (`_parameter_slots`: a
    `Linear(..., bias=False)`'s bias), as PyTorch's registered parameter does."""

    # Attributes of a layer that hold a Parameter or None (an optional parameter).
    _parameter_slots: tuple[str, ...] = ()
    #: Whether the module is in training mode (`train()`, `eval()`), as in PyTorch: no layer
    #: of minigrad.nn behaves differently; a layer of yours (dropout, say) may read it.
    training = True

    def __setattr__(self, name: str, value: Any) -> None:
        held = self.__dict__.get(name, self)  # (self: not set)
        if value is not None and not isinstance(value, Parameter) and (
                isinstance(held, Parameter) or held is None and name in self._parameter_slots):
            raise TypeError(
                f"{type(self).__name__}: cannot assign a {type(value).__name__} to "
                f"{name!r}, which holds "
                f"{'a Parameter' if held is not None else 'None for an optional Parameter'} "
                f"(Parameter or None expected): "
                f"parameters() would no longer find it, so training would not update it; "
                f"set .data to change its values, or del the attribute first")
        object.__setattr__(self, name, value)
        _move()

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        _move()

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

    def modules(self) -> Iterator[Module]:
        """This module and every sub-Module under it (in attributes, lists, tuples, dicts),
        each once, depth first in the order they were set."""
        for _, module in self.named_modules():
            yield module

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for each of `modules()`: this one named `prefix`, the
        others by the path to them, as `named_parameters` names their parameters ("0",
        "encoder.cell"); a module held twice under its first name."""
        found: list[tuple[str, Module]] = []
        _walk_modules(self, prefix, set(), found)
        yield from found

    def train(self, mode: bool = True) -> Module:
        """Set `training` to `mode` on this module and every sub-Module, as PyTorch does;
        return this module."""
        if type(mode) is not bool:
            raise TypeError(f"{type(self).__name__}.train: mode must be True or False, got "
                            f"{mode!r}")
        for module in self.modules():
            if module.training is not mode:  # (a compiled forward traces again on a change)
                module.training = mode
        return self

    def eval(self) -> Module:
        """`train(False)`: evaluation mode, as in PyTorch."""
        return self.train(False)

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        """The class name, and each direct sub-Module by name, one per line, as PyTorch
        prints a model (a module that holds one it is printed inside: "...")."""
        named = list(self.named_modules())[1:]
        children = [(name, m) for name, m in named  # (those held by no other sub-Module)
                    if not any(name.startswith(inner + ".") for inner, _ in named)]
        if not children:
            return f"{type(self).__name__}()"
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in children]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"

    def zero_grad(self) -> None:
        if current_mode() >= TRACING:  # a side effect the replays would not repeat
            raise TraceError("zero_grad() inside a traced function (minigrad.compile, "
                             "minigrad.scan) would run only when it is traced, not on its "
                             "replays; call it outside the function")
        for _, p in self._found(""):  # every training step: a list, no generators
            p.grad = None

    def _found(self, prefix: str) -> list[tuple[str, Parameter]]:
        found: list[tuple[str, Parameter]] = []
        _walk(vars(self), prefix, {id(self)}, found)
        return found

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter's value, by name (ValueError if two parameters have
        one name)."""
        if current_mode() >= TRACING:  # (as `.data`: a program would keep this call's values)
            raise TraceError("state_dict() inside a traced function (minigrad.compile, "
                             "minigrad.scan) reads the parameters' values, which the program "
                             "would keep as constants; compute with the parameters themselves")
        return {name: p._data.copy() for name, p in _by_name(self, "state_dict").items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy values into the parameters, in place. Every name, shape and dtype is checked
        first, that the values are finite in the parameters' dtype and that each
        parameter's array is writable, so a mismatch changes nothing (ValueError; a masked
        array, whose mask would be ignored, TypeError). Every value is read before any is
        written: an entry that is (or views) another parameter, as in a swap of two layers'
        weights, gives that parameter's value from before the call. A state that is no
        mapping (a list of pairs) is refused, TypeError."""
        if not isinstance(state, Mapping):
            raise TypeError(f"{type(self).__name__}.load_state_dict: expected a mapping (name "
                            f"-> array, as state_dict() gives), got {type(state).__name__}")
        params = _by_name(self, "load_state_dict")
        problems = _mismatches(params, state)
        if problems:
            raise ValueError(f"load_state_dict: state does not match {type(self).__name__}: "
                             + "; ".join(problems))
        targets = [p.data for p in params.values()]
        values = _read_before_written([_values(state[name], name) for name in params], targets)
        for target, value in zip(targets, values):
            np.copyto(target, value, casting="same_kind")


def _by_name(module: Module, where: str) -> dict[str, Parameter]:
    """The module's parameters by name, or ValueError if two share one (a dict's keys 1 and
    "1", an attribute whose name holds a dot): a state dict could hold only one of them."""
    params: dict[str, Parameter] = {}
    for name, p in module.named_parameters():
        if name in params:
            raise ValueError(f"{where}: two parameters of {type(module).__name__} are named "
                             f"{name!r}; a state dict could hold only one (rename one)")
        params[name] = p
    return params


def _values(x: Any, name: str) -> np.ndarray:
    """A state dict entry's array: a tensor's values (a parameter of another module), or
    the array or number itself (a masked array is refused: its mask would be ignored)."""
    return x._data if isinstance(x, Tensor) else plain_array(x, f"load_state_dict: {name!r}")


def _read_before_written(values: list[np.ndarray],
                         targets: list[np.ndarray]) -> list[np.ndarray]:
    """`values`, each copied where its memory may overlap some target's (their byte bounds
    overlap, as `np.may_share_memory` tells): writing the targets one by one then changes
    no value not read yet. (The targets' bounds sorted and merged, each value is looked up
    by bisection: a check of every pair cost a large module's load n**2 calls.)"""
    spans: list[list[int]] = []  # disjoint [low, high) byte ranges, in order
    for low, high in sorted(byte_bounds(t) for t in targets if t.size):
        if spans and low < spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], high)
        else:
            spans.append([low, high])
    starts = [low for low, _ in spans]

    def overlaps(value: np.ndarray) -> bool:
        low, high = byte_bounds(value)
        last = bisect.bisect_left(starts, high) - 1  # (the last span starting below `high`)
        return value.size > 0 and last >= 0 and spans[last][1] > low

    return [value.copy() if overlaps(value) else value for value in values]


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


def _walk_modules(value: Any, prefix: str, seen: set[int],
                  found: list[tuple[str, Module]]) -> None:
    """Append the Modules under `value` (itself first), each once, to `found` with their
    names (`_walk`'s)."""
    if isinstance(value, Module):
        if id(value) in seen:
            return
        seen.add(id(value))
        found.append((prefix, value))
        value = vars(value)
    items = value.items() if isinstance(value, Mapping) else enumerate(value) \
        if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        _walk_modules(item, f"{prefix}.{key}" if prefix else str(key), seen, found)


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
        value = _values(state[name], name)
        if not p.data.flags.writeable:  # (a memory-mapped file opened read-only, say)
            problems.append(f"'{name}' has a read-only .data, which cannot be loaded into")
        elif value.dtype.kind not in "biufc":  # (its shape would be what NumPy makes of it)
            given = state[name]
            what = "" if isinstance(given, np.ndarray) else f" (a {type(given).__name__})"
            problems.append(f"'{name}' has dtype {value.dtype}{what}, not numbers")
        elif value.shape != p.shape:
            problems.append(f"'{name}' has shape {value.shape}, expected {p.shape}")
        elif not np.can_cast(value.dtype, p.dtype, casting="same_kind"):
            # checked here too, or np.copyto would fail after copying the entries before it
            problems.append(f"'{name}' has dtype {value.dtype}, which cannot be cast to {p.dtype}")
        else:  # as `minigrad.load` and the optimizers refuse them
            with np.errstate(over="ignore"):
                finite = np.isfinite(value.astype(p.dtype, copy=False)).all()
            if not finite:
                cast = "" if not np.isfinite(value).all() else f" once cast to {p.dtype}"
                problems.append(f"'{name}' holds NaN or infinity{cast}")
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


def _check_bias(name: str, bias: Any, layer: bool = False) -> None:
    """TypeError unless `bias` is True or False: a recurrent cell's or `layer`'s third
    argument, where PyTorch's layers take num_layers (`nn.LSTM(10, 20, 2)` would be one layer
    with a bias)."""
    if not isinstance(bias, (bool, np.bool_)):
        hint = (" (PyTorch's layers take num_layers there; this layer is one layer: stack "
                "layers for more)" if layer and isinstance(bias, (int, np.integer)) else "")
        raise TypeError(f"{name}: bias must be True or False, got {type(bias).__name__} "
                        f"{bias!r}{hint}")


def _layer_options(name: str, sizes: dict[str, Any], rng: Any,
                   dtype: Any) -> tuple[list[int], np.random.Generator, np.dtype]:
    """A layer's sizes (integers >= 1, as ints), its generator (a fresh unseeded one for
    None) and its dtype (a floating one), checked where the layer is made: TypeError for a
    wrong type (a float size, a bool, an int seed for rng, an integer dtype the parameters
    could not learn in), ValueError for a size below 1 (a layer of no features computes
    nothing: PyTorch refuses an RNN's hidden_size 0 too)."""
    checked = []
    for what, size in sizes.items():
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"{name}: {what} must be an integer, got {type(size).__name__} "
                            f"{size!r}")
        if size < 1:
            raise ValueError(f"{name}: {what} must be at least 1, got {size}")
        checked.append(int(size))
    if rng is None:
        rng = np.random.default_rng()
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name}: rng must be a numpy.random.Generator or None, got "
                        f"{type(rng).__name__} {rng!r} (for a seed: rng=np.random.default_rng"
                        f"(seed))")
    try:
        floating = np.dtype(dtype)
    except (TypeError, ValueError):
        floating = None
    if floating is None or floating.kind != "f":
        raise TypeError(f"{name}: dtype must be a floating dtype (float16, float32, float64), "
                        f"got {repr(dtype) if floating is None else floating}: its parameters are "
                        "learnt by gradient steps")
    return checked, rng, floating


def _initial_weight(weight: Any, n_in: int, n_out: int, dtype: np.dtype) -> np.ndarray:
    """Linear's W as its `init` returned it, checked where the layer is made: in another
    dtype (its bias's, and its outputs', would differ) or shape it would fail, or transpose
    silently, only in a later forward."""
    what = f"Linear: init(rng, {n_in}, {n_out}, {dtype})"
    if weight is None:
        raise TypeError(f"{what} returned None, not an array of shape (n_in, n_out)")
    try:
        array = weight._data if isinstance(weight, Tensor) else plain_array(weight, what)
    except ValueError as error:  # (NumPy's "inhomogeneous shape", of nested lists, say)
        raise ValueError(f"{what} returned no array ({type(weight).__name__}): {error}") from None
    if array.dtype != dtype:
        raise TypeError(f"{what} returned an array of dtype {array.dtype}, not the layer's "
                        f"{dtype}")
    if array.shape != (n_in, n_out):
        layout = " (PyTorch's (n_out, n_in) layout: transpose it)" \
            if array.shape == (n_out, n_in) else ""
        raise ValueError(f"{what} returned an array of shape {array.shape}, not (n_in, n_out) "
                         f"= {(n_in, n_out)}{layout}")
    return array


class Linear(Module):
    """y = x W + b on the last axis of `x` (any rank), W of shape (n_in, n_out).

    W is drawn by `init(rng, n_in, n_out, dtype)` (Glorot-uniform unless told otherwise) from
    `rng`, a `numpy.random.Generator` (a fresh unseeded one if None); b starts at zero.
    `n_in` and `n_out` are integers >= 1 and `dtype` a floating dtype (else TypeError, or
    ValueError for a size below 1). `init` must return an array of shape (n_in, n_out) in
    `dtype` (else TypeError for another dtype, ValueError for another shape: PyTorch's
    (n_out, n_in) layout, say).
    """

    _parameter_slots = ("weight", "bias")

    def __init__(self, n_in: int, n_out: int, bias: bool = True, *,
                 rng: np.random.Generator | None = None, dtype: Any = np.float64,
                 init: Callable[..., np.ndarray] = glorot_uniform):
        (n_in, n_out), rng, dtype = _layer_options(
            "Linear", {"n_in": n_in, "n_out": n_out}, rng, dtype)
        self.n_in, self.n_out = n_in, n_out
        self.weight = Parameter(_initial_weight(init(rng, n_in, n_out, dtype), n_in, n_out, dtype))
        self.bias = Parameter(np.zeros(n_out, dtype)) if bias else None

    def forward(self, x: Any) -> Tensor:
        _refuse_tensors_in_sequence("Linear", "the input", x)
        shape = x.shape if isinstance(x, Tensor) else np.shape(x)
        if shape[-1:] != (self.n_in,):
            _refuse_non_numbers("Linear", "input", x)
            raise ValueError(f"Linear: expected input whose last axis has {self.n_in} "
                             f"elements, got shape {shape}")
        return matmul(x, self.weight) if self.bias is None else addmm(self.bias, x, self.weight)

    def __repr__(self) -> str:
        return f"Linear({self.n_in}, {self.n_out}, bias={self.bias is not None})"


class Sequential(Module):
    """`Sequential(a, b, c)(x)` is c(b(a(x))). The layers are Modules or any callables (an
    op such as `minigrad.tanh`); they are held as attributes "0", "1", ..., so parameters
    are named as in PyTorch ("0.weight"). Indexing and iterating give the layers, slicing a
    Sequential of some of them."""

    def __init__(self, *layers: Callable[[Any], Any]):
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"Sequential: layer {i} is a {type(layer).__name__}, which "
                                "cannot be called")
            setattr(self, str(i), layer)
        self._count = len(layers)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int | slice) -> Any:
        """The layer at `i`, or, for a slice, a Sequential of those layers (the same
        objects, numbered from 0 again), as PyTorch's."""
        if isinstance(i, slice):
            return Sequential(*list(self)[i])
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(f"Sequential: indices must be integers or slices, not "
                            f"{type(i).__name__}") from None
        if not -self._count <= i < self._count:
            raise IndexError(f"Sequential: index {i} out of range for {self._count} layers")
        return getattr(self, str(i % self._count))

    def __iter__(self) -> Iterator[Any]:
        return (getattr(self, str(i)) for i in range(self._count))

    def forward(self, x: Any) -> Any:
        for layer in self:
            x = layer(x)
        return x

    def __repr__(self) -> str:
        """One layer a line, by index, as PyTorch prints a Sequential (a function by name)."""
        lines = [f"  ({i}): " + (getattr(layer, "__name__", None) or repr(layer)).replace(
            "\n", "\n  ") for i, layer in enumerate(self)]
        return "Sequential(\n" + "\n".join(lines) + "\n)" if lines else "Sequential()"


class _Cell(Module):
    """The parameters of a recurrent cell with `gates` blocks of `hidden` units, laid out as
    PyTorch's (its weight_ih transposed, as `Linear` stores x W): weight_ih (n_in,
    gates * hidden), weight_hh (hidden, gates * hidden), bias_ih and bias_hh (gates *
    hidden), all uniform in +-1/sqrt(hidden), drawn from `rng` (a `numpy.random.Generator`,
    a fresh unseeded one if None). `n_in` and `hidden` are integers >= 1 and `dtype` a
    floating dtype (else TypeError, or ValueError for a size below 1)."""

    gates = 1
    _parameter_slots = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

    def __init__(self, n_in: int, hidden: int, bias: bool = True, *,
                 rng: np.random.Generator | None = None, dtype: Any = np.float64):
        (n_in, hidden), rng, dtype = _layer_options(
            type(self).__name__, {"n_in": n_in, "hidden": hidden}, rng, dtype)
        _check_bias(type(self).__name__, bias)
        self.n_in, self.hidden = n_in, hidden
        bound = 1.0 / math.sqrt(hidden)
        width = self.gates * hidden

        def draw(*shape: int) -> Parameter:
            return Parameter(rng.uniform(-bound, bound, size=shape).astype(dtype))

        self.weight_ih, self.weight_hh = draw(n_in, width), draw(hidden, width)
        self.bias_ih = draw(width) if bias else None
        self.bias_hh = draw(width) if bias else None

    def _projections(self, x: Any, h: Any, c: Any = None) -> tuple[Tensor, Tensor]:
        """x W_ih + b_ih and h W_hh + b_hh, shapes checked (and c's, an LSTM's cell state);
        h=None is a zero state (as in PyTorch)."""
        name = type(self).__name__
        for what, value in (("the input", x), ("the state", h), ("c", c)):
            _refuse_tensors_in_sequence(name, what, value)
        shape = _shape(x)
        if shape[-1:] != (self.n_in,):
            _refuse_non_numbers(name, "input", x)
            raise ValueError(f"{name}: expected input whose last axis has {self.n_in} "
                             f"elements, got shape {shape}")
        # The state's whole shape: one of another batch shape would broadcast (as PyTorch's
        # cells, an unbatched x takes an unbatched state).
        expected = shape[:-1] + (self.hidden,)
        for what, state in (("h" if self.gates == 4 else "a state", h), ("c", c)):
            if state is not None and _shape(state) != expected:
                _refuse_non_numbers(name, what, state)
                raise ValueError(f"{name}: expected {what} of shape {expected} for an input "
                                 f"of shape {shape}, got shape {_shape(state)}")
        if h is None:
            h = self.zero_state(shape[:-1])
        return (self._affine(x, self.weight_ih, self.bias_ih),
                self._affine(h, self.weight_hh, self.bias_hh))

    def zero_state(self, batch: int | tuple[int, ...] = ()) -> np.ndarray:
        """Zeros of the hidden state's shape for inputs of batch shape `batch` (a tuple, or
        an int for one batch axis), (*batch, hidden), in the parameters' dtype (an LSTM's
        state is two such: pass `(z, z)`)."""
        if isinstance(batch, (int, np.integer)) and not isinstance(batch, (bool, np.bool_)):
            batch = (int(batch),)
        if not isinstance(batch, tuple):
            raise TypeError(f"{type(self).__name__}.zero_state: batch must be a tuple of "
                            f"sizes or an int, got {type(batch).__name__} {batch!r}")
        return np.zeros(batch + (self.hidden,), self.weight_hh.dtype)

    @staticmethod
    def _affine(x: Any, weight: Parameter, bias: Parameter | None) -> Tensor:
        return matmul(x, weight) if bias is None else addmm(bias, x, weight)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.n_in}, {self.hidden}, bias={self.bias_ih is not None})"


class RNNCell(_Cell):
    """One step of an Elman RNN, PyTorch's `RNNCell`:
    h' = act(x W_ih + b_ih + h W_hh + b_hh), act tanh (or relu: `nonlinearity="relu"`).
    `cell(x, h)` takes x of shape (..., n_in) and h of shape (..., hidden), the same batch
    shape (none for one unbatched x), or h=None for a zero state; it returns h'."""

    def __init__(self, n_in: int, hidden: int, bias: bool = True, nonlinearity: str = "tanh",
                 *, rng: np.random.Generator | None = None, dtype: Any = np.float64):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        super().__init__(n_in, hidden, bias, rng=rng, dtype=dtype)
        self.nonlinearity = nonlinearity

    def __repr__(self) -> str:
        relu = ", nonlinearity='relu'" if self.nonlinearity == "relu" else ""
        return super().__repr__()[:-1] + relu + ")"

    def forward(self, x: Any, h: Any = None) -> Tensor:
        gi, gh = self._projections(x, h)
        act = tanh if self.nonlinearity == "tanh" else relu
        return act(gi + gh)


class GRUCell(_Cell):
    """One step of a GRU, PyTorch's `GRUCell`, gates r, z, n in that order along the weights'
    columns: r = sigmoid(x W_ir + b_ir + h W_hr + b_hr), z likewise,
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn)), h' = (1 - z) * n + z * h.
    `cell(x, h)` returns h'; h has x's batch shape, (..., hidden), or is None, a zero state."""

    gates = 3

    def forward(self, x: Any, h: Any = None) -> Tensor:
        gi, gh = self._projections(x, h)
        i_r, i_z, i_n = split(gi, 3, axis=-1)
        h_r, h_z, h_n = split(gh, 3, axis=-1)
        r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
        n = tanh(i_n + r * h_n)
        return (1.0 - z) * n if h is None else (1.0 - z) * n + z * h


class LSTMCell(_Cell):
    """One step of an LSTM, PyTorch's `LSTMCell`, gates i, f, g, o in that order along the
    weights' columns: i, f, o = sigmoid(x W_i* + b_i* + h W_h* + b_h*), g = tanh(...),
    c' = f * c + i * g, h' = o * tanh(c'). `cell(x, (h, c))` returns (h', c'); h and c have
    x's batch shape, (..., hidden), and state=None (or either part None) is a zero state."""

    gates = 4

    def forward(self, x: Any, state: tuple[Any, Any] | None = None) -> tuple[Tensor, Tensor]:
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise TypeError(f"LSTMCell: state must be a pair (h, c) or None, got "
                            f"{type(state).__name__}")
        h, c = (None, None) if state is None else state
        gi, gh = self._projections(x, h, c)
        i, f, g, o = split(gi + gh, 4, axis=-1)
        i, f, g, o = sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
        c = i * g if c is None else f * c + i * g
        return o * tanh(c), c


class Recurrent(Module):
    """A cell looped over a sequence by `minigrad.scan`, as PyTorch's `nn.RNN`, `nn.GRU` and
    `nn.LSTM` loop theirs: `layer(X, state=None)` takes X time-major, (L, ..., n_in), and
    returns `(outputs, state)`: every step's h stacked, (L, ..., hidden), and the last state
    (h, or (h, c) for an LSTM). The initial `state` is h0 of shape (..., hidden), X's batch
    shape, or None for zeros; for an LSTM a pair (h0, c0), either None for zeros. One
    layer: PyTorch's h0 of shape (1, batch, hidden) is `h0[0]` here; a state of another
    shape is refused (ValueError), not broadcast, and a masked X or state (TypeError), as
    by the ops: its mask would be ignored. Backward is the cell's own ops' VJPs run
    per step in reverse, derived by scan; the cell's weights are loop invariants."""

    def __init__(self, cell: _Cell):
        if not isinstance(cell, _Cell):
            raise TypeError(f"Recurrent: cell must be an RNNCell, GRUCell or LSTMCell, got "
                            f"{type(cell).__name__} (loop a cell of your own with "
                            f"minigrad.scan)")
        self.cell = cell

    @property
    def _name(self) -> str:
        """The layer's name in errors: "GRU" for a GRUCell's."""
        return type(self.cell).__name__.removesuffix("Cell")

    def step(self, state: Any, x: Any) -> tuple[Any, Tensor]:
        state = self.cell(x, state)
        return state, state[0] if isinstance(state, tuple) else state

    def forward(self, X: Any, state: Any = None, **unexpected: Any) -> tuple[Tensor, Any]:
        from .scan import scan  # (scan builds on this module's generation counter)

        if unexpected:  # (Python's message would name this class, not the layer)
            keyword = next(iter(unexpected))
            hint = "; minigrad's names it state=" if keyword in ("hx", "h0") else ""
            raise TypeError(f"{self._name}() got an unexpected keyword argument "
                            f"{keyword!r}{hint}")
        _refuse_tensors_in_sequence(self._name, "X", X)
        if not isinstance(X, Tensor):
            given, X = X, plain_array(X, f"{self._name}: X")
            _refuse_non_numbers(self._name, "X", given, X)
        n_in = self.cell.n_in
        if X.ndim < 2 or X.shape[-1] != n_in:  # (checked here: the cell sees one step's slice)
            raise ValueError(f"{self._name}: expected X of shape (L, *batch, {n_in}), time-major "
                             f"with {n_in} features on its last axis, got shape {X.shape}")
        # The state in the dtype the cell computes in (NumPy's promotion of the inputs' and
        # the weights'), so that the carry keeps its dtype from step to step.
        dtype = np.result_type(X.dtype if X.dtype.kind == "f" else np.float64,
                               self.cell.weight_hh.dtype)
        if isinstance(self.cell, LSTMCell):
            if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
                raise TypeError(f"LSTM: state must be a pair (h, c) or None, got "
                                f"{type(state).__name__}")
            h, c = (None, None) if state is None else state
            _refuse_tensors_in_sequence(self._name, "h0", h)
            _refuse_tensors_in_sequence(self._name, "c0", c)
            state = (self._start("h0", h, X, dtype), self._start("c0", c, X, dtype))
        else:
            _refuse_tensors_in_sequence(self._name, "the state", state)
            state = self._start("h0", state, X, dtype)
        last, outputs = scan(self.step, state, X)
        return outputs, last

    def _start(self, what: str, state: Any, X: Any, dtype: np.dtype) -> Any:
        """A starting state: zeros for None, else `state` in `dtype` (by an op: a tensor's
        gradient flows through the conversion), of X's batch shape (or ValueError)."""
        expected = tuple(X.shape[1:-1]) + (self.cell.hidden,)
        if state is None:
            return np.zeros(expected, dtype)
        if not isinstance(state, Tensor):
            given, state = state, plain_array(state, f"{self._name}: {what}")
            _refuse_non_numbers(self._name, what, given, state)  # (a complex one, cast, would
            state = state.astype(dtype, copy=False)  # lose its imaginary part)
        if state.shape != expected:
            raise ValueError(f"{self._name}: expected {what} of shape {expected} (X of shape "
                             f"{X.shape} is (L, *batch, n_in), hidden {self.cell.hidden}), "
                             f"got shape {state.shape}")
        return state if state.dtype == dtype else astype(state, dtype)


def _shape(x: Any) -> tuple[int, ...]:
    return x.shape if isinstance(x, Tensor) else np.shape(x)


def _refuse_tensors_in_sequence(name: str, what: str, x: Any) -> None:
    """TypeError for a list or tuple that holds tensors, where one array or tensor is taken:
    NumPy would stack it (into a sequence of its parts, under no_grad) or refuse it naming
    itself; a recurrent layer's `(outputs, state)` passed on whole is the usual one."""
    if isinstance(x, (list, tuple)) and _holds_tensor(x):
        hint = (": a recurrent layer returns (outputs, state); pass its outputs"
                if isinstance(x, tuple) and len(x) == 2 else "")
        raise TypeError(f"{name}: {what} is a {type(x).__name__} of tensors, not one tensor or "
                        f"array{hint}")


def _holds_tensor(x: Any, depth: int = 0) -> bool:
    return depth < 50 and any(isinstance(item, Tensor) or isinstance(item, (list, tuple))
                              and _holds_tensor(item, depth + 1) for item in x)


def _refuse_non_numbers(name: str, what: str, x: Any, array: np.ndarray | None = None) -> None:
    """TypeError naming layer `name` unless `x` is a tensor or holds real numbers (None,
    a string or complex values: what NumPy makes of it has a shape, which would be
    blamed instead). `array` is NumPy's array of `x`, if the caller has it."""
    if not isinstance(x, Tensor):
        dtype = (np.asarray(x) if array is None else array).dtype
        if dtype.kind not in "biuf":
            given = f"an array of dtype {dtype}" if isinstance(x, np.ndarray) else \
                f"{type(x).__name__} (NumPy's dtype {dtype})"
            raise TypeError(f"{name}: {what} must be a tensor or an array of real numbers, got "
                            f"{given}")


def RNN(n_in: int, hidden: int, bias: bool = True, nonlinearity: str = "tanh", *,
        rng: np.random.Generator | None = None, dtype: Any = np.float64) -> Recurrent:
    """An Elman RNN over a sequence: `RNNCell` looped by `scan` (see `Recurrent`)."""
    _layer_options("RNN", {"n_in": n_in, "hidden": hidden}, rng, dtype)  # (named RNN)
    _check_bias("RNN", bias, layer=True)
    return Recurrent(RNNCell(n_in, hidden, bias, nonlinearity, rng=rng, dtype=dtype))


def GRU(n_in: int, hidden: int, bias: bool = True, *, rng: np.random.Generator | None = None,
        dtype: Any = np.float64) -> Recurrent:
    """A GRU over a sequence: `GRUCell` looped by `scan` (see `Recurrent`)."""
    _layer_options("GRU", {"n_in": n_in, "hidden": hidden}, rng, dtype)  # (named GRU)
    _check_bias("GRU", bias, layer=True)
    return Recurrent(GRUCell(n_in, hidden, bias, rng=rng, dtype=dtype))


def LSTM(n_in: int, hidden: int, bias: bool = True, *, rng: np.random.Generator | None = None,
         dtype: Any = np.float64) -> Recurrent:
    """An LSTM over a sequence: `LSTMCell` looped by `scan` (see `Recurrent`); its state is
    the pair (h, c)."""
    _layer_options("LSTM", {"n_in": n_in, "hidden": hidden}, rng, dtype)  # (named LSTM)
    _check_bias("LSTM", bias, layer=True)
    return Recurrent(LSTMCell(n_in, hidden, bias, rng=rng, dtype=dtype))
