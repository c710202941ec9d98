"""What is measured, and how often: the step configurations, the sweeps and their repeats.

Two plans: `FULL` (the published numbers; 23 minutes with the other libraries' rows on a
heavily loaded 2-core machine) and `QUICK` (tiny sizes and a few repeats, for the smoke
test: seconds). Each adder case names the preset whose hyperparameters its optimizer uses
(RMSProp-Nesterov's lr, decay, momentum, eps); the architecture is that preset's (tanh,
biases, learned S_0, Glorot) at the case's sizes.

Targets are for float64 with BLAS on one thread: an engine mode's median step time (or
peak memory) divided by the hand-written step's (`benchmarks.handwritten`), measured in the
same run. They are keyed by the engine mode's row name (`EAGER`, ...), so a new mode's
targets are one more entry in each case's `targets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EAGER", "FULL", "QUICK", "SECTIONS", "Plan", "StepCase", "Sweep"]

EAGER = "minigrad eager"   # the row name of the engine's eager mode
COMPILED = "minigrad compiled"  # mg.compile's replay of the traced step


@dataclass(frozen=True)
class StepCase:
    """One training step of the adder (or the counter) at fixed sizes."""

    key: str                 # "A", ..., "counter"
    title: str
    batch: int
    timesteps: int
    states: int              # 1 for the counter
    repeats: int
    warmup: int
    # Engine mode -> largest ratio of its step time to the hand-written step's (float64).
    targets: dict[str, float] = field(default_factory=dict)
    preset: str = "large"    # whose RMSProp-Nesterov hyperparameters (adder cases)
    others: bool = False     # also time PyTorch / JAX / autograd where importable
    # What is stepped: "adder" (the models' adder), "counter", "gru" or "lstm" (a cell
    # stepped by scan, `benchmarks.user_models`), "user" (the adder as a user writes it).
    model: str = "adder"

    @property
    def is_counter(self) -> bool:
        return self.model == "counter"

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The adder's cases run in both precisions, the others in float64 only."""
        return ("float64", "float32") if self.model == "adder" else ("float64",)

    @property
    def sizes(self) -> str:
        if self.is_counter:
            return f"{self.batch} seq. × {self.timesteps}"
        return f"{self.batch} × {self.timesteps} × {self.states}"


@dataclass(frozen=True)
class Sweep:
    """Steps of the float64 adder as one size grows, the others fixed.

    `values` are the sizes taken by `vary` ("timesteps", "batch" or "states"); `repeats[i]`
    is the repeat count at `values[i]` (fewer where a step is long).
    """

    key: str
    vary: str
    values: tuple[int, ...]
    repeats: tuple[int, ...]
    batch: int
    timesteps: int
    states: int
    warmup: int = 2
    gc_off: bool = False     # also time the engine with the garbage collector paused

    def sizes(self, value: int) -> tuple[int, int, int]:
        """(batch, timesteps, states) at `value` of the varied size."""
        sizes = {"batch": self.batch, "timesteps": self.timesteps, "states": self.states}
        sizes[self.vary] = value
        return sizes["batch"], sizes["timesteps"], sizes["states"]


@dataclass(frozen=True)
class Plan:
    steps: tuple[StepCase, ...]
    memory_case: str         # the key of the step case whose peak memory is measured
    # Engine mode -> largest ratio of its peak to the hand-written step's (float64).
    memory_targets: dict[str, float]
    memory_repeats: int
    sweeps: tuple[Sweep, ...]
    linear_tolerance: float  # largest local exponent d log(time) / d log(T) called linear
    op_repeats: int
    op_number: int           # calls per op sample


FULL = Plan(
    steps=(
        StepCase("A", "the tutorial's adder", 100, 7, 3, repeats=800, warmup=20,
                 targets={EAGER: 1.6, COMPILED: 1.2}, preset="small", others=True),
        StepCase("B", "its larger run", 200, 13, 32, repeats=500, warmup=10,
                 targets={EAGER: 1.2, COMPILED: 1.1}, others=True),
        StepCase("C", "a long sequence", 100, 1000, 32, repeats=30, warmup=2,
                 targets={EAGER: 1.2, COMPILED: 1.1}, others=True),
        StepCase("D", "wide", 2000, 13, 128, repeats=80, warmup=3,
                 targets={EAGER: 1.1, COMPILED: 1.05}),
        StepCase("counter", "the counter (RProp)", 20, 10, 1, repeats=3000, warmup=50,
                 targets={EAGER: 2.0, COMPILED: 1.1}, model="counter"),
        StepCase("gru", "a GRU (nn.GRUCell, scan; SGD)", 200, 13, 32, repeats=300, warmup=10,
                 targets={EAGER: 1.5, COMPILED: 1.3}, model="gru"),
        StepCase("lstm", "an LSTM (nn.LSTMCell, scan; SGD)", 200, 13, 32, repeats=300,
                 warmup=10, targets={EAGER: 1.5, COMPILED: 1.3}, model="lstm"),
        StepCase("user", "the adder as a user writes it (A's and B's sizes)", 100, 7, 3,
                 repeats=800, warmup=20, preset="small", model="user"),
        StepCase("user", "the adder as a user writes it (A's and B's sizes)", 200, 13, 32,
                 repeats=500, warmup=10, model="user"),
    ),
    memory_case="C",
    memory_targets={EAGER: 1.1, COMPILED: 1.1},
    memory_repeats=3,
    sweeps=(
        Sweep("length", "timesteps", (10, 100, 1000, 10_000), (400, 150, 30, 9),
              batch=10, timesteps=0, states=16, gc_off=True),
        Sweep("batch", "batch", (10, 100, 1000, 10_000), (400, 200, 60, 15),
              batch=0, timesteps=13, states=16),
        Sweep("states", "states", (4, 16, 64, 256), (400, 300, 150, 40),
              batch=100, timesteps=13, states=0),
    ),
    linear_tolerance=1.1,
    op_repeats=31,
    op_number=200,
)

QUICK = Plan(
    steps=(
        StepCase("A", "the tutorial's adder", 10, 7, 3, repeats=3, warmup=1,
                 targets={EAGER: 1.6, COMPILED: 1.2}, preset="small", others=True),
        StepCase("B", "its larger run", 10, 5, 4, repeats=3, warmup=1,
                 targets={EAGER: 1.2, COMPILED: 1.1}, others=True),
        StepCase("C", "a long sequence", 4, 70, 4, repeats=3, warmup=1,
                 targets={EAGER: 1.2, COMPILED: 1.1}, others=True),
        StepCase("D", "wide", 20, 5, 8, repeats=3, warmup=1,
                 targets={EAGER: 1.1, COMPILED: 1.05}),
        StepCase("counter", "the counter (RProp)", 20, 10, 1, repeats=3, warmup=1,
                 targets={EAGER: 2.0, COMPILED: 1.1}, model="counter"),
        StepCase("gru", "a GRU (nn.GRUCell, scan; SGD)", 10, 5, 4, repeats=3, warmup=1,
                 targets={EAGER: 1.5, COMPILED: 1.3}, model="gru"),
        StepCase("lstm", "an LSTM (nn.LSTMCell, scan; SGD)", 10, 5, 4, repeats=3, warmup=1,
                 targets={EAGER: 1.5, COMPILED: 1.3}, model="lstm"),
        StepCase("user", "the adder as a user writes it (A's and B's sizes)", 10, 7, 3,
                 repeats=3, warmup=1, preset="small", model="user"),
        StepCase("user", "the adder as a user writes it (A's and B's sizes)", 10, 5, 4,
                 repeats=3, warmup=1, model="user"),
    ),
    memory_case="C",
    memory_targets={EAGER: 1.1, COMPILED: 1.1},
    memory_repeats=1,
    sweeps=(
        Sweep("length", "timesteps", (5, 20, 80), (3, 3, 3), batch=4, timesteps=0, states=4,
              warmup=1, gc_off=True),
        Sweep("batch", "batch", (5, 20, 80), (3, 3, 3), batch=0, timesteps=5, states=4,
              warmup=1),
        Sweep("states", "states", (2, 4, 8), (3, 3, 3), batch=5, timesteps=5, states=0,
              warmup=1),
    ),
    linear_tolerance=1.1,
    op_repeats=3,
    op_number=5,
)

# What `--only` accepts, in the order of the report.
SECTIONS = ("A", "B", "C", "D", "counter", "gru", "lstm", "user", "memory", "length", "batch",
            "states", "ops", "optim")
#: The largest ratio of `optim.RMSPropNesterov.step` to the plain NumPy update (case A).
OPTIMIZER_TARGET = 1.15
