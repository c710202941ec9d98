"""Optimizers for minigrad: pure NumPy update rules inside a thin PyTorch-style shell.

They work on any object with ``.data`` (a float NumPy array, updated in place) and ``.grad``
(an array of the same shape, or None to skip the parameter), so the same optimizer object
can train a minigrad model and a hand-coded NumPy reference. Usage::

    opt = optim.RProp(model.parameters())            # or optim.create("rprop", ...)
    def closure():
        opt.zero_grad()
        loss = model.loss(x, t)
        loss.backward()
        return loss
    for _ in range(500):
        opt.step(closure)

Adding an optimizer: write a module with a pure in-place rule ``<name>_rule(p, g, <state
arrays>, <work arrays>, *, <hyperparameters>)`` and an :class:`Optimizer` subclass that sets
``name`` and implements ``_validate_hyperparameters`` (with :func:`check_real` /
:func:`check_bool`), ``_state_arrays``, ``_initial_state`` and ``_update``; add it to
:data:`OPTIMIZERS` in ``registry.py`` and export it here; test it against a direct
transcription of its equations and in the state_dict round trip (tests/test_optim_*.py).
"""

from .adam import Adam
from .optimizer import NonFiniteGradientError, Optimizer, ParameterLike, check_bool, check_real
from .registry import OPTIMIZERS, create
from .rmsprop_nesterov import RMSPropNesterov
from .rprop import RProp
from .sgd import SGD

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "NonFiniteGradientError",
    "Optimizer",
    "ParameterLike",
    "RMSPropNesterov",
    "RProp",
    "check_bool",
    "check_real",
    "create",
]
