"""The adder step in other autodiff libraries, where they are importable: PyTorch, JAX and
HIPS autograd. None of them is a dependency of minigrad; an absent one is skipped with a
note.

Each library computes the same model as `minigrad.models.Adder` (Z = X W_in + b_in + b_rec, the
tanh or sigmoid recurrence from the learned S_0, logits S W_out + b_out, mean binary
cross-entropy from the logits) and its gradients; everything else of the step is shared with
the engine's and the reference's: the same `minigrad.optim.RMSPropNesterov` (on `Param`
objects whose arrays the library reads), the same closure, the same starting parameters and
minibatch. So the rows differ from the engine's only in how the forward and backward pass
are computed.

- PyTorch: eager mode, leaves made by `torch.from_numpy` on the parameters' own arrays (the
  optimizer's in-place updates are what torch reads), a Python loop over the timesteps of
  `Z.unbind(1)`, `binary_cross_entropy_with_logits`; `torch.set_num_threads(1)`.
- JAX: `jax.jit(jax.value_and_grad(loss))` with `lax.scan` over timesteps, float64 enabled
  (`jax_enable_x64`); the minibatch is put on the device once, the parameters are passed
  as NumPy arrays each step and the gradients read back with `np.asarray`. Compilation
  happens in the warm-up, outside the timed rounds. XLA is held to one thread through
  XLA_FLAGS (see `benchmarks.threads`).
- autograd: `autograd.value_and_grad` of the same loss on `autograd.numpy`, Python loop.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from minigrad.models.reference import Param

from .steps import AdderSetup, training_step

__all__ = ["LIBRARIES", "Library", "available", "other_steps"]

Objective = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Library:
    key: str          # "torch"
    label: str        # "PyTorch"
    module: str       # what to import
    distribution: str


LIBRARIES = (
    Library("torch", "PyTorch", "torch", "torch"),
    Library("jax", "JAX", "jax", "jax"),
    Library("autograd", "autograd", "autograd", "autograd"),
)

_status: dict[str, tuple[str | None, str]] = {}


def available(library: Library) -> tuple[str | None, str]:
    """(version, "") if the library imports, else (None, why not). Imported once."""
    if library.key not in _status:
        try:
            module = importlib.import_module(library.module)
            _configure(library.key, module)
            try:
                version = metadata.version(library.distribution)
            except metadata.PackageNotFoundError:
                version = getattr(module, "__version__", "?")
            _status[library.key] = (version, "")
        except Exception as error:  # noqa: BLE001 (an optional library may fail in any way)
            _status[library.key] = (None, f"not importable ({type(error).__name__}: {error})")
    return _status[library.key]


def _configure(key: str, module: Any) -> None:
    if key == "torch":
        module.set_num_threads(1)
        # Only possible before torch's first parallel work.
        with contextlib.suppress(RuntimeError):
            module.set_num_interop_threads(1)
    elif key == "jax":
        module.config.update("jax_enable_x64", True)
        module.config.update("jax_platforms", "cpu")


def other_steps(setup: AdderSetup) -> dict[str, Callable[[], float]]:
    """"label version" -> step for every importable library (`available` says why not)."""
    steps = {}
    for library in LIBRARIES:
        version, _ = available(library)
        if version is None:
            continue
        params = {name: Param(value) for name, value in setup.initial_parameters().items()}
        objective = _OBJECTIVES[library.key](setup, params)
        optimizer = setup.optimizer(list(params.values()))
        steps[f"{library.label} {version}"] = training_step(optimizer, objective, setup.X,
                                                            setup.T)
    return steps


# --- the model in each library ----------------------------------------------------------


def _torch_objective(setup: AdderSetup, params: dict[str, Param]) -> Objective:
    import torch
    import torch.nn.functional as F

    config = setup.config
    leaves = {name: torch.from_numpy(p.data).requires_grad_() for name, p in params.items()}
    act = torch.tanh if config.activation == "tanh" else torch.sigmoid

    def loss_of(X: Any, T: Any) -> Any:
        p = leaves
        Z = X @ p["input.weight"]
        if config.bias:
            Z = Z + p["input.bias"] + p["recurrent.bias"]
        W = p["recurrent.weight"]
        S = p.get("initial_state")
        states = []
        # unbind, not Z[:, k]: the backward of each slice would allocate a zero tensor of
        # Z's whole shape (O(T^2) for the sequence); unbind's backward is one stack.
        for z in Z.unbind(dim=1):
            S = act(z if S is None else z + S @ W)
            states.append(S)
        logits = torch.stack(states, dim=1) @ p["output.weight"]
        if config.bias:
            logits = logits + p["output.bias"]
        return F.binary_cross_entropy_with_logits(logits, T)

    def objective(X: np.ndarray, T: np.ndarray) -> float:
        for leaf in leaves.values():
            leaf.grad = None
        loss = loss_of(torch.from_numpy(X), torch.from_numpy(T))
        loss.backward()
        for name, p in params.items():
            p.grad = leaves[name].grad.numpy()
        return loss.item()

    return objective


def _numpy_like_loss(xp: Any, config: Any) -> Callable[..., Any]:
    """The adder's loss on a NumPy-like module (autograd.numpy), Python loop over time."""
    act = xp.tanh if config.activation == "tanh" else (lambda z: 0.5 * (xp.tanh(0.5 * z) + 1))

    def loss(p: dict[str, Any], X: Any, T: Any) -> Any:
        Z = xp.dot(X, p["input.weight"])
        if config.bias:
            Z = Z + p["input.bias"] + p["recurrent.bias"]
        W = p["recurrent.weight"]
        S = p.get("initial_state")
        states = []
        for k in range(X.shape[1]):
            S = act(Z[:, k] if S is None else Z[:, k] + xp.dot(S, W))
            states.append(S)
        logits = xp.dot(xp.stack(states, axis=1), p["output.weight"])
        if config.bias:
            logits = logits + p["output.bias"]
        return _bce_with_logits(xp, logits, T)

    return loss


def _bce_with_logits(xp: Any, z: Any, t: Any) -> Any:
    return xp.mean(xp.maximum(z, 0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z))))


def _autograd_objective(setup: AdderSetup, params: dict[str, Param]) -> Objective:
    import autograd
    import autograd.numpy as anp

    value_and_grad = autograd.value_and_grad(_numpy_like_loss(anp, setup.config))

    def objective(X: np.ndarray, T: np.ndarray) -> float:
        loss, grads = value_and_grad({name: p.data for name, p in params.items()}, X, T)
        for name, p in params.items():
            p.grad = np.asarray(grads[name])
        return float(loss)

    return objective


def _jax_objective(setup: AdderSetup, params: dict[str, Param]) -> Objective:
    import jax
    import jax.numpy as jnp
    from jax import lax

    config = setup.config
    act = jnp.tanh if config.activation == "tanh" else jax.nn.sigmoid

    def loss(p: dict[str, Any], X: Any, T: Any) -> Any:
        Z = X @ p["input.weight"]
        if config.bias:
            Z = Z + p["input.bias"] + p["recurrent.bias"]
        W = p["recurrent.weight"]
        if "initial_state" in p:
            S0 = jnp.broadcast_to(p["initial_state"], (X.shape[0], config.n_states))
        else:
            S0 = jnp.zeros((X.shape[0], config.n_states), Z.dtype)

        def cell(S: Any, z: Any) -> tuple[Any, Any]:
            S = act(z + S @ W)
            return S, S

        _, states = lax.scan(cell, S0, jnp.swapaxes(Z, 0, 1))
        logits = jnp.swapaxes(states, 0, 1) @ p["output.weight"]
        if config.bias:
            logits = logits + p["output.bias"]
        return _bce_with_logits(jnp, logits, T)

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    cache: dict[int, tuple[np.ndarray, Any]] = {}

    def on_device(a: np.ndarray) -> Any:
        # The minibatch goes to the device once: it is the same array at every step.
        hit = cache.get(id(a))
        if hit is None or hit[0] is not a:
            hit = cache[id(a)] = (a, jax.device_put(a))
        return hit[1]

    def objective(X: np.ndarray, T: np.ndarray) -> float:
        X_, T_ = on_device(X), on_device(T)
        value, grads = value_and_grad({name: p.data for name, p in params.items()}, X_, T_)
        for name, p in params.items():
            p.grad = np.asarray(grads[name])
        return float(value)

    return objective


_OBJECTIVES: dict[str, Callable[[AdderSetup, dict[str, Param]], Objective]] = {
    "torch": _torch_objective,
    "jax": _jax_objective,
    "autograd": _autograd_objective,
}
