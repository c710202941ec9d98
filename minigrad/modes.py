"""Grad mode and anomaly mode: per thread and per async context, never process-wide.

Both live in one `ContextVar` holding a bit mask, so the record path reads the mode with a
single lookup. A new thread starts with the default, recording on and anomaly mode off, as
PyTorch's thread-local grad mode does; an asyncio task starts with a copy of its creator's
mode, and its own changes stay its own.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

# Ordered so that `record` tests the bits with comparisons, which CPython 3.11 does faster
# than `&`: outside a trace (mode < TRACING), recording is on exactly when mode >= RECORDING.
ANOMALY, RECORDING = 1, 2
# Set while a function is traced in this thread (`minigrad.trace`): `record` reports each op
# to the trace, and no tensor's value may be read in Python.
TRACING = 4
_mode: ContextVar[int] = ContextVar("minigrad_mode", default=RECORDING)
# The input tensors of every `grad` / `value_and_grad` whose `f` is running in this thread or
# context (innermost last): a gradient taken inside it must not reach them (first order
# only: `minigrad.functional`).
enclosing_grad_inputs: ContextVar[tuple[Any, ...]] = ContextVar("minigrad_grad_inputs",
                                                                default=())
# The record path's one read of the mode (a bound method: no attribute lookup per op).
current_mode = _mode.get


class TraceError(RuntimeError):
    """A traced function did something a trace cannot capture: it read a traced value in
    Python (to branch on it, print it, or compute with NumPy), or made a value a program
    cannot give back on a later call."""


def refuse_traced(what: str, shape: tuple[int, ...]) -> TraceError:
    """The error for Python reading a value while a function is traced."""
    return TraceError(
        f"{what} of a tensor of shape {shape} while a function is traced (minigrad.compile, "
        "minigrad.scan): a trace records ops, not Python decisions on values. Compute with "
        "minigrad ops (mg.astype, mg.transpose, x.reshape, ...), pass what you need as an "
        "argument, or read the value outside the traced function")


@contextmanager
def _set(bit: int, on: bool) -> Iterator[None]:
    before = _mode.get() & bit
    _mode.set(_mode.get() | bit if on else _mode.get() & ~bit)
    try:
        yield
    finally:  # the bit as it was, in the context the block ends in: a generator suspended
        # in the block may end it in another (a token would refuse that, and stay set)
        _mode.set(_mode.get() & ~bit | before)


class _GradMode(AbstractContextManager[None]):
    """Grad mode on or off: a block (`with mg.no_grad():`), or a decorator (`@mg.no_grad()`)
    whose function runs in it; a generator function's body runs in it each time it is
    resumed (its caller's mode in between), as PyTorch's decorator does (a coroutine
    function's is not covered). One object is one block at a time (RuntimeError if
    entered again before it is left), so that no block gets another thread's mode back."""

    def __init__(self, on: bool):
        self.on = on
        self.before: list[tuple[object, int]] = []  # (the bit before its block)

    def __enter__(self) -> None:  # (as `_set`, without a generator's cost)
        mode = _mode.get()
        block = (object(), mode & RECORDING)
        self.before.append(block)  # (atomic: of two threads entering, one sees the other)
        if len(self.before) > 1:  # its saved bit would be another block's: refused
            self.before.remove(block)
            raise RuntimeError(
                f"{'no_grad' if not self.on else 'enable_grad'}(): this object is in a block "
                "already (of this thread, or another's): write `with mg.no_grad():` for each "
                "block, so that each has its own mode to go back to")
        _mode.set(mode | RECORDING if self.on else mode & ~RECORDING)

    def __exit__(self, *exception: Any) -> None:
        if not self.before:
            raise RuntimeError("no_grad()/enable_grad(): left without being entered")
        # (the admitted block is the first: one refused meanwhile adds its own after it)
        _mode.set(_mode.get() & ~RECORDING | self.before.pop(0)[1])

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        if isinstance(function, type):
            raise TypeError("no_grad()/enable_grad() decorates a function, not a class")
        on = self.on
        if inspect.isgeneratorfunction(function):
            @functools.wraps(function)
            def generator(*args: Any, **kwargs: Any) -> Any:
                return (yield from _resumed_in(function(*args, **kwargs), on))

            return generator

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            with _set(RECORDING, on):
                return function(*args, **kwargs)

        return call


def _resumed_in(inner: Generator[Any, Any, Any], on: bool) -> Generator[Any, Any, Any]:
    """`inner`'s items, each step of it run with recording `on`."""
    step: Callable[[], Any] = functools.partial(inner.send, None)
    while True:
        try:
            with _set(RECORDING, on):
                item = step()
        except StopIteration as stop:
            return stop.value
        try:
            value = yield item
        except GeneratorExit:
            with _set(RECORDING, on):
                inner.close()
            raise
        except BaseException as error:  # (thrown in: passed on to the body)
            step = functools.partial(inner.throw, error)
        else:
            step = functools.partial(inner.send, value)


def no_grad() -> _GradMode:
    """Record nothing inside this block, in this thread or task only: ops on tensors that
    require grad give plain tensors. Also a decorator (`@mg.no_grad()`), of generator
    functions too."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Record again inside a `no_grad()` block (of this thread or task); also a decorator."""
    return _GradMode(True)


def is_recording() -> bool:
    """True unless inside `no_grad()` in this thread or task."""
    return bool(_mode.get() & RECORDING)


def is_anomaly_enabled() -> bool:
    """True inside `detect_anomaly()` in this thread or task."""
    return bool(_mode.get() & ANOMALY)


@contextmanager
def detect_anomaly(enabled: bool = True) -> Iterator[None]:
    """Stop at the first recorded op whose output, or whose gradient in backward, holds NaN or
    infinity, with an `AnomalyError` naming the op, its input shapes and the line of the
    caller's code that created it.

    Only recorded ops are checked: those with an input that requires grad, outside
    `no_grad()`. Inside the block NumPy's divide, overflow and invalid warnings are silenced
    (the check reports them instead; NumPy's error state is context-local too). The mode is
    this thread's or task's own; blocks nest and restore the previous mode on exit.
    """
    with _set(ANOMALY, bool(enabled)):
        if enabled:
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                yield
        else:
            yield

