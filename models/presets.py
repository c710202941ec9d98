"""The adder's architecture and training settings, and the three published setups.

`AdderConfig` fixes the model (and so the names and shapes of its parameters, see
`AdderConfig.parameter_shapes`); `TrainConfig` fixes the data size and the optimizer.
`PRESETS` maps a name to the pair used by a write-up (SPEC 2 and 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["PRESETS", "PRESET_DESCRIPTIONS", "AdderConfig", "TrainConfig", "get_preset"]

Activation = Literal["tanh", "sigmoid"]
RecurrentInit = Literal["glorot", "orthogonal"]
OptimizerName = Literal["rmsprop_nesterov", "sgd"]

ACTIVATIONS: tuple[str, ...] = ("tanh", "sigmoid")
RECURRENT_INITS: tuple[str, ...] = ("glorot", "orthogonal")
OPTIMIZERS: tuple[str, ...] = ("rmsprop_nesterov", "sgd")



@dataclass(frozen=True)
class AdderConfig:
    """The binary adder RNN (defaults: the tutorial's small model, SPEC 2).

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
        _check_int("AdderConfig", "n_bits", self.n_bits, low=1)
        _check_int("AdderConfig", "n_states", self.n_states, low=1)
        _check_choice("AdderConfig", "activation", self.activation, ACTIVATIONS)
        _check_bool("AdderConfig", "bias", self.bias)
        _check_bool("AdderConfig", "learn_initial_state", self.learn_initial_state)
        _check_choice("AdderConfig", "recurrent_init", self.recurrent_init, RECURRENT_INITS)
        if self.max_operand is not None:
            _check_int("AdderConfig", "max_operand", self.max_operand, low=1)
            if 2 * (self.max_operand - 1) >= 2**self.n_bits:
                raise ValueError(
                    f"AdderConfig: max_operand={self.max_operand} allows sums that do not "
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
    divide).

    ``optimizer`` is "rmsprop_nesterov" (SPEC 2: per parameter, ``V' = momentum V``,
    ``P += V'``, ``g = grad at P``, ``MA = decay MA + (1 - decay) g^2``,
    ``step = lr g / (sqrt(MA) + eps)``, ``V = V' - step``, ``P -= step``) or "sgd"
    (``P -= lr g``, no momentum). ``decay``, ``momentum`` and ``eps`` belong to
    RMSProp-Nesterov; plain SGD does not read them.
    """

    n_samples: int = 2000
    batch_size: int = 100
    epochs: int = 5
    optimizer: OptimizerName = "rmsprop_nesterov"
    lr: float = 0.05
    decay: float = 0.5
    momentum: float = 0.8
    eps: float = 1e-6

    def __post_init__(self) -> None:
        _check_int("TrainConfig", "n_samples", self.n_samples, low=1)
        _check_int("TrainConfig", "batch_size", self.batch_size, low=1, high=self.n_samples)
        _check_int("TrainConfig", "epochs", self.epochs, low=1)
        _check_choice("TrainConfig", "optimizer", self.optimizer, OPTIMIZERS)
        _check_real("TrainConfig", "lr", self.lr, positive=True)
        _check_real("TrainConfig", "decay", self.decay, below_one=True)
        _check_real("TrainConfig", "momentum", self.momentum, below_one=True)
        _check_real("TrainConfig", "eps", self.eps, positive=True)

    @property
    def steps_per_epoch(self) -> int:
        """Minibatches in one pass: ``ceil(n_samples / batch_size)``."""
        return -(-self.n_samples // self.batch_size)

    @property
    def total_steps(self) -> int:
        """Optimizer steps in the whole run."""
        return self.steps_per_epoch * self.epochs


def _check_int(owner: str, field: str, value: object, low: int, high: int | None = None) -> None:
    # bool is an int subclass, but True as a size is always a mistake.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{owner}.{field} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{owner}.{field} must be {bounds}, got {value}")


def _check_bool(owner: str, field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{field} must be True or False, got {value!r}")


def _check_choice(owner: str, field: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{owner}.{field} must be one of {', '.join(choices)}; got {value!r}")


def _check_real(
    owner: str, field: str, value: object, positive: bool = False, below_one: bool = False
) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{owner}.{field} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{owner}.{field} must be > 0, got {value}")
    if below_one and not 0 <= value < 1:
        raise ValueError(f"{owner}.{field} must be in [0, 1), got {value}")


PRESETS: dict[str, tuple[AdderConfig, TrainConfig]] = {
    "small": (
        AdderConfig(
            n_bits=7,
            n_states=3,
            activation="tanh",
            bias=True,
            learn_initial_state=True,
            recurrent_init="glorot",
        ),
        TrainConfig(
            n_samples=2000,
            batch_size=100,
            epochs=5,
            optimizer="rmsprop_nesterov",
            lr=0.05,
            decay=0.5,
            momentum=0.8,
            eps=1e-6,
        ),
    ),
    "large": (
        AdderConfig(
            n_bits=13,
            n_states=32,
            activation="tanh",
            bias=True,
            learn_initial_state=True,
            recurrent_init="glorot",
        ),
        TrainConfig(
            n_samples=20000,
            batch_size=200,
            epochs=20,
            optimizer="rmsprop_nesterov",
            lr=0.02,
            decay=0.5,
            momentum=0.8,
            eps=1e-6,
        ),
    ),
    "keras": (
        AdderConfig(
            n_bits=8,
            n_states=16,
            activation="sigmoid",
            bias=False,
            learn_initial_state=False,
            recurrent_init="orthogonal",
            max_operand=128,
        ),
        TrainConfig(n_samples=100_000, batch_size=1, epochs=1, optimizer="sgd", lr=0.1),
    ),
}

PRESET_DESCRIPTIONS: dict[str, str] = {
    "small": "Tutorial part 2: 6-bit sums in 7 bits, 3 tanh states, RMSProp-Nesterov, 5 passes.",
    "large": "Tutorial part 2, larger run: 12-bit sums in 13 bits, 32 tanh states, 20 passes.",
    "keras": "Keras post: 8 bits, 16 sigmoid units, no biases, plain SGD on 100,000 single sums.",
}


def get_preset(name: str) -> tuple[AdderConfig, TrainConfig]:
    """The preset called ``name``; ValueError listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
