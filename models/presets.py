"""The adder's architecture and training settings, the three published setups, and the
counter's training settings.

`AdderConfig` fixes the model (and so the names and shapes of its parameters, see
`AdderConfig.parameter_shapes`); `TrainConfig` fixes the data size and the optimizer;
`CounterTraining` fixes the counter's RProp run. `PRESETS` maps a name to the pair used by
a write-up: "small" and "large" from part 2 of the tutorial "How to implement an RNN"
("Implement binary addition with a non-linear RNN"), "keras" from the post "Understand
recurrent networks with the binary addition".
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from minigrad import optim

_REAL, _BOOLEAN = optim.Real(), optim.Boolean()

__all__ = [
    "PRESETS",
    "PRESET_DESCRIPTIONS",
    "AdderConfig",
    "CounterTraining",
    "TrainConfig",
    "get_preset",
]

Activation = Literal["tanh", "sigmoid"]
RecurrentInit = Literal["glorot", "orthogonal"]

ACTIVATIONS: tuple[str, ...] = get_args(Activation)
RECURRENT_INITS: tuple[str, ...] = get_args(RecurrentInit)

@dataclass(frozen=True)
class AdderConfig:
    """The binary adder RNN (defaults: the tutorial's small model: 7 bits, 3 tanh states).

    With ``x_k`` the 2 input bits at position k (least significant first)::

        Z_k = x_k W_in + b_in
        S_k = act(Z_k + S_{k-1} W_rec + b_rec),   k = 1 .. n_bits
        y_k = sigmoid(S_k W_out + b_out)

    Fields:
        n_bits: sequence length L (the sums' width).
        n_states: width of the state S.
        activation: ``act``, "tanh" or "sigmoid".
        bias: whether b_in, b_rec and b_out exist (all three or none).
        learn_initial_state: S_0 is a parameter starting at zero, else S_0 = 0 fixed.
        recurrent_init: "glorot" (uniform +-sqrt(6 / (2 n_states))) or "orthogonal".
        max_operand: operands are drawn from [0, max_operand); None means 2**(n_bits - 1).
    """

    n_bits: int = 7
    n_states: int = 3
    activation: Activation = "tanh"
    bias: bool = True
    learn_initial_state: bool = True
    recurrent_init: RecurrentInit = "glorot"
    max_operand: int | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_int(owner, "n_bits", self.n_bits, low=1)
        _check_int(owner, "n_states", self.n_states, low=1)
        _check_choice(owner, "activation", self.activation, ACTIVATIONS)
        _BOOLEAN(owner, "bias", self.bias)
        _BOOLEAN(owner, "learn_initial_state", self.learn_initial_state)
        _check_choice(owner, "recurrent_init", self.recurrent_init, RECURRENT_INITS)
        if self.max_operand is not None:
            _check_int(owner, "max_operand", self.max_operand, low=1)
            if 2 * (self.max_operand - 1) >= 2**self.n_bits:
                raise ValueError(
                    f"{owner}: max_operand={self.max_operand} allows sums that do not "
                    f"fit in n_bits={self.n_bits}"
                )

    @property
    def operand_limit(self) -> int:
        """The exclusive upper bound of the operands: ``max_operand`` or ``2**(n_bits-1)``."""
        return self.max_operand if self.max_operand is not None else 2 ** (self.n_bits - 1)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The model's parameters, name -> shape, in their canonical order.

        The order is the one of ``named_parameters()`` and of initialisation draws.
        """
        n = self.n_states
        shapes: dict[str, tuple[int, ...]] = {"input.weight": (2, n)}
        if self.bias:
            shapes["input.bias"] = (n,)
        shapes["recurrent.weight"] = (n, n)
        if self.bias:
            shapes["recurrent.bias"] = (n,)
        if self.learn_initial_state:
            shapes["initial_state"] = (n,)
        shapes["output.weight"] = (n, 1)
        if self.bias:
            shapes["output.bias"] = (1,)
        return shapes

    @property
    def n_parameters(self) -> int:
        """The number of scalar parameters (304 for the Keras model)."""
        return sum(math.prod(shape) for shape in self.parameter_shapes().values())


@dataclass(frozen=True)
class TrainConfig:
    """How the adder is trained: ``epochs`` passes over ``n_samples`` fresh sums in
    non-overlapping minibatches of ``batch_size`` (the last one smaller if it does not
    divide), by the optimizer registered in `minigrad.optim.OPTIMIZERS` as ``optimizer``.

    The optimizer is built by `create_optimizer` with those of ``lr``, ``decay``,
    ``momentum`` and ``eps`` that are not None (None: the optimizer's own default, or none
    for RProp's lr); a set one that the optimizer does not take is refused.
    "rmsprop_nesterov" is the tutorial's rule: per parameter, ``V' = momentum V``,
    ``P += V'``, ``g = grad at P``, ``MA = decay MA + (1 - decay) g^2``,
    ``step = lr g / (sqrt(MA) + eps)``, ``V = V' - step``, ``P -= step``; "sgd" with
    momentum 0 is ``P -= lr g``.
    """

    n_samples: int = 2000
    batch_size: int = 100
    epochs: int = 5
    optimizer: str = "rmsprop_nesterov"
    lr: float | None = 0.05
    decay: float | None = None
    momentum: float | None = None
    eps: float | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_int(owner, "n_samples", self.n_samples, low=1)
        _check_int(owner, "batch_size", self.batch_size, low=1, high=self.n_samples)
        _check_int(owner, "epochs", self.epochs, low=1)
        _check_choice(owner, "optimizer", self.optimizer, tuple(optim.OPTIMIZERS))
        for name, value in self.hyperparameters().items():
            if not self.takes(name):
                raise ValueError(f"{owner}: {self.optimizer} takes no {name}, got "
                                 f"{name}={value!r}")
        optim.OPTIMIZERS[self.optimizer].check(**self.hyperparameters())  # the bounds

    def takes(self, hyperparameter: str) -> bool:
        """Whether the optimizer's constructor has a keyword called ``hyperparameter``."""
        return hyperparameter in inspect.signature(optim.OPTIMIZERS[self.optimizer]).parameters

    def hyperparameters(self) -> dict[str, float]:
        """The optimizer's keyword arguments: the settings that are not None."""
        values = {"lr": self.lr, "decay": self.decay, "momentum": self.momentum,
                  "eps": self.eps}
        return {name: value for name, value in values.items() if value is not None}

    def create_optimizer(self, params: Any) -> optim.Optimizer:
        """The optimizer named by ``optimizer`` on ``params``, with `hyperparameters`."""
        return optim.create(self.optimizer, params, **self.hyperparameters())

    @property
    def steps_per_epoch(self) -> int:
        """Minibatches in one pass: ``ceil(n_samples / batch_size)``."""
        return -(-self.n_samples // self.batch_size)

    @property
    def total_steps(self) -> int:
        """Optimizer steps in the whole run."""
        return self.steps_per_epoch * self.epochs


@dataclass(frozen=True)
class CounterTraining:
    """The counter's run in part 1 of "How to implement an RNN" ("Minimal example"): RProp,
    full batch, ``iterations`` steps from ``(w_x, w_rec)``, a point of exploding gradient.

    Per parameter, the step size Delta starts at ``step_init``; it grows by ``eta_plus``
    while the gradient keeps its sign and shrinks by ``eta_minus`` when the sign flips; the
    parameter moves by ``-sign(gradient) * Delta``. The data are ``sequences`` random 0/1
    sequences of ``length`` drawn from ``seed``.
    """

    iterations: int = 500
    w_x: float = -1.5
    w_rec: float = 2.0
    eta_plus: float = 1.2
    eta_minus: float = 0.5
    step_init: float = 0.001
    seed: int = 0
    sequences: int = 20
    length: int = 10

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("iterations", "sequences", "length"):
            _check_int(owner, name, getattr(self, name), low=1)
        _check_int(owner, "seed", self.seed, low=0)
        _REAL(owner, "w_x", self.w_x)
        _REAL(owner, "w_rec", self.w_rec)
        optim.RProp.check(eta_plus=self.eta_plus, eta_minus=self.eta_minus,
                          step_init=self.step_init)

    def create_optimizer(self, params: Any) -> optim.Optimizer:
        """RProp with this run's ``eta_plus``, ``eta_minus`` and ``step_init``."""
        return optim.create("rprop", params, eta_plus=self.eta_plus,
                            eta_minus=self.eta_minus, step_init=self.step_init)


def _check_int(owner: str, field: str, value: object, low: int, high: int | None = None) -> None:
    # bool is an int subclass, but True as a size is always a mistake.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{owner}: invalid {field}={value!r}: must be an integer")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{owner}: invalid {field}={value!r}: must be {bounds}")


def _check_choice(owner: str, field: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{owner}: invalid {field}={value!r}: must be one of "
                         f"{', '.join(choices)}")


PRESETS: dict[str, tuple[AdderConfig, TrainConfig]] = {
    # "How to implement an RNN", part 2: 6-bit operands in 7 bits, 3 tanh states, 2000
    # samples, minibatches of 100, 5 passes, RMSProp with Nesterov momentum.
    "small": (
        AdderConfig(n_bits=7, n_states=3, activation="tanh", bias=True,
                    learn_initial_state=True, recurrent_init="glorot"),
        TrainConfig(n_samples=2000, batch_size=100, epochs=5, optimizer="rmsprop_nesterov",
                    lr=0.05, decay=0.5, momentum=0.8, eps=1e-6),
    ),
    # The same tutorial's larger run: 12-bit operands in 13 bits, 32 states, 20000 samples,
    # minibatches of 200, 20 passes, learning rate 0.02.
    "large": (
        AdderConfig(n_bits=13, n_states=32, activation="tanh", bias=True,
                    learn_initial_state=True, recurrent_init="glorot"),
        TrainConfig(n_samples=20000, batch_size=200, epochs=20, optimizer="rmsprop_nesterov",
                    lr=0.02, decay=0.5, momentum=0.8, eps=1e-6),
    ),
    # "Understand recurrent networks with the binary addition": 8 bits, operands below 128,
    # 16 sigmoid units without biases, orthogonal recurrent weights, zero initial state;
    # plain SGD (learning rate 0.1, no momentum) on one sum per step, 100,000 steps.
    "keras": (
        AdderConfig(n_bits=8, n_states=16, activation="sigmoid", bias=False,
                    learn_initial_state=False, recurrent_init="orthogonal", max_operand=128),
        TrainConfig(n_samples=100_000, batch_size=1, epochs=1, optimizer="sgd", lr=0.1),
    ),
}

PRESET_DESCRIPTIONS: dict[str, str] = {
    "small": "6-bit operands, sums of 7 bits, 3 tanh states, RMSProp-Nesterov, 5 passes "
             "over 2000 sums (\"How to implement an RNN\", part 2)",
    "large": "12-bit operands, sums of 13 bits, 32 tanh states, 20 passes over 20000 sums "
             "(the same tutorial's larger run)",
    "keras": "7-bit operands (below 128), sums of 8 bits, 16 sigmoid units without biases, "
             "plain SGD on 100,000 single sums (\"Understand recurrent networks with the "
             "binary addition\")",
}


def get_preset(name: str) -> tuple[AdderConfig, TrainConfig]:
    """The preset called ``name``; ValueError listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
