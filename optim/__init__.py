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

Each optimizer is a rule and a name. The rule (``SGDRule``, ``RPropRule``,
``RMSPropNesterovRule``, ``AdamRule``) is a frozen dataclass: its fields are the
hyperparameters, and its methods are pure functions of arrays, e.g. Adam's::

    def update(self, t, p, g, state):
        b1, b2 = self.betas
        m = b1 * state["exp_avg"] + (1 - b1) * g
        v = b2 * state["exp_avg_sq"] + (1 - b2) * g**2
        denominator = np.sqrt(v) / math.sqrt(1 - b2**t) + self.eps
        return self.lr / (1 - b1**t) * (m / denominator), {"exp_avg": m, "exp_avg_sq": v}

The :class:`Optimizer` shell does the rest, the same way for all: ``zero_grad``,
``step(closure)``, the gradient checks, ``state_dict`` / ``load_state_dict``.

Adding an optimizer: in a new module, write a frozen dataclass subclassing
:class:`UpdateRule` with

- ``optimizer = "Name"`` (for error messages) and the hyperparameters as fields, with
  their defaults;
- ``__post_init__`` validating each field once (``self.real("lr", low=0.0)``,
  ``self.boolean(...)``, or :func:`check_real` / :func:`check_bool` for anything else);
- ``init(p)``: the state of a parameter not yet updated, a dict of arrays shaped like p;
- ``update(t, p, g, state)``: ``(step, new state)`` for the t-th update (t = 1, 2, ...),
  the parameter moving to ``p - step``; new arrays only, never the caller's ``g`` stored
  uncopied;
- if needed, ``look_ahead(state)`` (the move to where the gradient must be taken; the
  shell then requires a closure) and ``state_problem(state)`` (what makes a loaded state
  impossible, such as a negative second moment).

Then ``class Name(Optimizer)`` with ``name = "name"``, ``Rule = NameRule`` and a docstring
that names the exact variant and gives its equations; add it to :data:`OPTIMIZERS` in
``registry.py`` and export it here. Test it against a direct transcription of its
equations (tests/test_optim_rules.py) and add it to the shell tests' ``CONFIGS``
(tests/test_optim_shell.py), which run the closure, non-finite, skip and state_dict
checks on every optimizer.
"""

from .adam import Adam, AdamRule
from .optimizer import (
    NonFiniteGradientError,
    Optimizer,
    ParameterLike,
    UpdateRule,
    check_bool,
    check_real,
)
from .registry import OPTIMIZERS, create
from .rmsprop_nesterov import RMSPropNesterov, RMSPropNesterovRule
from .rprop import RProp, RPropRule
from .sgd import SGD, SGDRule

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "AdamRule",
    "NonFiniteGradientError",
    "Optimizer",
    "ParameterLike",
    "RMSPropNesterov",
    "RMSPropNesterovRule",
    "RProp",
    "RPropRule",
    "SGDRule",
    "UpdateRule",
    "check_bool",
    "check_real",
    "create",
]
