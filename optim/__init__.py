"""Optimizers for minigrad: each update rule written as its math, inside one PyTorch-style shell.

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

Hyperparameters can change during a run, checked where they are declared::

    opt = optim.SGD([{"params": body, "lr": 0.01}, {"params": head}], lr=0.1, momentum=0.9)
    opt.param_groups[1]["lr"] = 0.05                 # one group
    opt.momentum = 0.5                               # every group; opt.momentum = 2 raises
    schedule = optim.StepLR(opt, step_size=10)       # StepLR, ExponentialLR, CosineAnnealingLR
    total = optim.clip_grad_norm(model.parameters(), max_norm=1.0)
    minigrad.save(opt, "opt.npz"); minigrad.load(opt, "opt.npz")   # resume exactly

Each optimizer is one class (``SGD``, ``RProp``, ``RMSPropNesterov``, ``Adam``, ``AdamW``):
its ``bounds`` (hyperparameter -> check), its ``__init__`` with the defaults, and its
math on flat arrays, e.g. Adam's::

    def update(self, h, t, p, g, state):
        b1, b2 = h.betas
        m = b1 * state["exp_avg"] + (1 - b1) * g
        v = b2 * state["exp_avg_sq"] + (1 - b2) * g * g
        denominator = np.sqrt(v) / math.sqrt(1 - b2**t) + h.eps
        return h.lr / (1 - b1**t) * (m / denominator), {"exp_avg": m, "exp_avg_sq": v}

The :class:`Optimizer` shell does the rest, the same way for all (see its module).

Adding an optimizer: subclass :class:`Optimizer` with ``name``, ``bounds`` (reuse
:data:`LEARNING_RATE`, :data:`FRACTION`, ... or a :class:`Real`), an ``__init__`` passing
the hyperparameters to ``Optimizer.__init__``, ``init(h, p)`` (the state, arrays shaped
like p) and ``update(h, t, p, g, state)`` returning ``(step, new state)`` as new arrays;
if needed ``check_together`` (bounds between hyperparameters), ``look_ahead(h, state)``
(the shell then requires a closure) and ``state_problem(h, state)`` (what a loaded state
cannot be); ``keeps_inputs = False`` if its step and state are always new arrays (never
``g`` or ``p``, nor views of them), which saves the shell two copies a step (a subclass
that writes its own ``update`` keeps its inputs again unless it says so). Give it a
docstring with its equations, add it to ``registry.py`` and export it
here; test it against a transcription of its equations (tests/test_optim_rules.py) and add
it to ``CONFIGS`` in tests/test_optim_shell.py.
"""

from .adam import Adam, AdamW
from .clip import clip_grad_norm
from .optimizer import (
    FRACTION,
    LEARNING_RATE,
    NONNEGATIVE,
    POSITIVE,
    Boolean,
    HyperparameterTypeError,
    NonFiniteGradientError,
    Optimizer,
    Pair,
    ParameterLike,
    ParamGroup,
    Real,
)
from .registry import OPTIMIZERS, create
from .rmsprop_nesterov import RMSPropNesterov
from .rprop import RProp
from .schedules import CosineAnnealingLR, ExponentialLR, Schedule, StepLR
from .sgd import SGD

__all__ = [
    "FRACTION",
    "LEARNING_RATE",
    "NONNEGATIVE",
    "OPTIMIZERS",
    "POSITIVE",
    "SGD",
    "Adam",
    "AdamW",
    "Boolean",
    "CosineAnnealingLR",
    "ExponentialLR",
    "HyperparameterTypeError",
    "NonFiniteGradientError",
    "Optimizer",
    "Pair",
    "ParamGroup",
    "ParameterLike",
    "RMSPropNesterov",
    "RProp",
    "Real",
    "Schedule",
    "StepLR",
    "clip_grad_norm",
    "create",
]
