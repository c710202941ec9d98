"""The memory section's lean hand-written adder (`benchmarks.lean.LeanAdder`): it computes
what the engine computes, and it keeps only the states and block-sized work arrays.

Tolerances are `tests/test_benchmarks.py`'s for the adder (float64: rtol 1e-10, atol 1e-13,
the same expressions in another order on O(1) factors; float32: rtol 1e-5 on the loss,
rtol 1e-4 plus atol 1e-6 on the gradients). The lean step sums the loss and the gradients
block by block, one more reordering of the same sums.

Memory is asserted structurally, never as a time: the buffers it keeps are the states plus
arrays that do not grow with the sequence length, and its traced peak at a moderate size
is below `HandwrittenAdder`'s and within half the states' size of the states themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_benchmarks import (
    ARCHITECTURES,
    RTOL,
    assert_same,
    bits,
    drawn_adder,
    engine_loss_and_gradients,
    handwritten_loss_and_gradients,
    seeds,
)

from benchmarks.configs import FULL, QUICK
from benchmarks.handwritten import HandwrittenAdder
from benchmarks.lean import LeanAdder
from benchmarks.memory import step_peak
from benchmarks.report import memory_table, step_table
from benchmarks.steps import AdderSetup, adder_setup, flat_step, training_step
from benchmarks.suite import EAGER, HANDWRITTEN, LEAN, TUTORIAL, CaseResult, MemoryResult
from minigrad.models.presets import AdderConfig
from minigrad.models.timing import Timing
from minigrad.models.training import engine_objective

ROOT = Path(__file__).resolve().parent.parent


def lean_step(setup: AdderSetup, model: LeanAdder):
    """The memory section's step of `model`, as the hand-written adder's is run."""
    return flat_step(setup.plain_update, model, setup.X, setup.T)


@given(architecture=st.sampled_from(ARCHITECTURES), states=st.integers(1, 6), seed=seeds,
       steps_per_block=st.integers(1, 6),
       sizes=st.lists(st.tuples(st.integers(1, 9), st.integers(1, 14)), min_size=1,
                      max_size=3))
def test_lean_adder_gives_the_engines_and_the_handwrittens_loss_and_gradients(
        architecture, states, seed, steps_per_block, sizes):
    # Lengths up to 14 with blocks of 1 to 6 positions: one block, several, a last block of
    # one position (m = 0 alone) or of the top position alone. One model through every
    # drawn (batch, length): its buffers are reallocated or reused.
    config, params, rng = drawn_adder(architecture, states, seed)
    model = LeanAdder(config, params, steps_per_block=steps_per_block)
    handwritten = HandwrittenAdder(config, params)
    for batch, length in sizes:
        X, T = bits(rng, batch, length, 2), bits(rng, batch, length, 1)
        lean = handwritten_loss_and_gradients(model, X, T)
        assert_same(lean, engine_loss_and_gradients(config, params, X, T), "engine")
        assert_same(lean, handwritten_loss_and_gradients(handwritten, X, T), "hand-written")


def test_lean_training_steps_follow_the_engines_trajectory():
    # The memory section's step (the plain update) at the benchmark's preset.
    setup = adder_setup(30, 21, 5, preset="large")
    engine = setup.engine()
    engine_step = training_step(setup.optimizer(list(engine.parameters())),
                                engine_objective(engine), setup.X, setup.T)
    model = LeanAdder(setup.config, setup.start, steps_per_block=4)
    step = lean_step(setup, model)
    for _ in range(4):
        np.testing.assert_allclose(step(), engine_step(), rtol=RTOL)
    engine_params = dict(engine.named_parameters())
    for name, param in model.named_parameters():
        np.testing.assert_allclose(param.data, engine_params[name].data, rtol=RTOL,
                                   atol=1e-13, err_msg=name)


def test_lean_gradients_accumulate_across_calls_without_zero_grad():
    config, params, rng = drawn_adder(("sigmoid", True, True), 4, seed=5)
    X, T = bits(rng, 6, 9, 2), bits(rng, 6, 9, 1)
    model = LeanAdder(config, params, steps_per_block=3)
    _, once = handwritten_loss_and_gradients(model, X, T)
    model.loss_and_backward(X, T)  # no zero_grad: adds a second, equal gradient
    for name, param in model.named_parameters():
        np.testing.assert_allclose(param.grad, 2 * once[name], rtol=1e-15, err_msg=name)


def test_lean_adder_reads_a_parameter_replaced_by_assignment():
    config, params, rng = drawn_adder(("tanh", True, True), 3, seed=7)
    X, T = bits(rng, 5, 6, 2), bits(rng, 5, 6, 1)
    model = LeanAdder(config, params, steps_per_block=4)
    model.loss_and_backward(X, T)
    moved = {**params, "recurrent.weight": params["recurrent.weight"] + 0.5,
             "input.bias": params["input.bias"] - 0.3, "output.bias": params["output.bias"] - 1.0}
    for name in ("recurrent.weight", "input.bias", "output.bias"):
        model._params[name].data = moved[name].copy()
    assert_same(handwritten_loss_and_gradients(model, X, T),
                engine_loss_and_gradients(config, moved, X, T), "replaced")


def test_lean_adder_refuses_a_block_of_no_steps():
    # (its parameters and dtype: test_benchmarks' refusal tests, for both adders)
    config = AdderConfig(n_states=3)
    params = {name: np.zeros(shape) for name, shape in config.parameter_shapes().items()}
    with pytest.raises(ValueError, match=r"LeanAdder: steps_per_block must be at least 1, "
                                         r"got 0"):
        LeanAdder(config, params, steps_per_block=0)


# --- memory -----------------------------------------------------------------------------


def states_bytes(batch: int, length: int, states: int, dtype=np.float64) -> int:
    """S_0 .. S_L: what backpropagation through time must keep."""
    return (length + 1) * states * batch * np.dtype(dtype).itemsize


@pytest.mark.parametrize("steps_per_block", [1, 16])
def test_lean_adder_keeps_the_states_and_nothing_else_that_grows_with_the_length(
        steps_per_block):
    config, params, rng = drawn_adder(("tanh", True, True), 4, seed=2)
    model = LeanAdder(config, params, steps_per_block=steps_per_block)
    above_the_states = set()
    for length in (40, 80, 400):
        X, T = bits(rng, 7, length, 2), bits(rng, 7, length, 1)
        model.loss_and_backward(X, T)
        above_the_states.add(model.workspace_bytes - states_bytes(7, length, 4))
        assert_same(handwritten_loss_and_gradients(model, X, T),
                    engine_loss_and_gradients(config, params, X, T), str(length))
    assert len(above_the_states) == 1       # the block's arrays, whatever the length
    model.release_buffers()
    assert model.workspace_bytes == 0


def test_lean_peak_is_the_states_and_below_the_handwritten_peak():
    # A moderate size: the states are 1.3 MB, the block arrays a few hundred kB, Python's
    # objects of a step a few kB.
    batch, length, states = 50, 200, 16
    setup = adder_setup(batch, length, states)
    model = LeanAdder(setup.config, setup.start)
    peak = step_peak(lean_step(setup, model), repeats=1, warmup=2,
                     before_each=model.release_buffers)
    handwritten = setup.handwritten()
    handwritten_peak = step_peak(setup.handwritten_step(handwritten), repeats=1, warmup=2,
                                 before_each=handwritten.release_buffers)
    kept = states_bytes(batch, length, states)
    assert kept <= model.workspace_bytes <= peak     # it allocates what it keeps
    assert peak < 1.5 * kept + 64_000
    assert peak < handwritten_peak / 2


def test_lean_peak_grows_with_the_length_as_the_states_do():
    # From L to 4 L the peak grows by the states' growth, not by a multiple of it (the
    # speed baseline's grows by about three times as much).
    batch, states = 40, 12
    peaks = {}
    for length in (60, 240):
        setup = adder_setup(batch, length, states)
        model = LeanAdder(setup.config, setup.start)
        peaks[length] = step_peak(lean_step(setup, model), repeats=1, warmup=1,
                                  before_each=model.release_buffers)
    growth = states_bytes(batch, 240, states) - states_bytes(batch, 60, states)
    assert 0.9 * growth < peaks[240] - peaks[60] < 1.1 * growth


# --- the memory section -----------------------------------------------------------------


def test_memory_ratios_are_to_the_smaller_handwritten_peak():
    case = next(c for c in QUICK.steps if c.key == QUICK.memory_case)
    for handwritten, lean, baseline in ((900, 300, LEAN), (250, 300, HANDWRITTEN)):
        result = MemoryResult(case, np.dtype(np.float64),
                              {HANDWRITTEN: handwritten, LEAN: lean, TUTORIAL: 1200,
                               EAGER: 600})
        assert result.baseline == baseline
        assert result.ratio(EAGER) == 600 / min(handwritten, lean)
        text, verdicts = memory_table([result], {EAGER: 1.1})
        assert f"| ratio to {baseline} | ratio to {TUTORIAL} |" in text
        assert f"**{600 / min(handwritten, lean):.2f}**" in text
        assert [v.passed for v in verdicts] == [False]
        assert f"against {baseline}" in verdicts[0].target


def test_step_ratios_are_to_the_faster_handwritten_step():
    case = next(c for c in FULL.steps if c.key == "C")
    for handwritten, lean, baseline in ((9.0, 8.0, LEAN), (7.0, 8.0, HANDWRITTEN)):
        times = {HANDWRITTEN: handwritten, LEAN: lean, TUTORIAL: 20.0, EAGER: 10.0}
        result = CaseResult(case, np.dtype(np.float64),
                            {name: Timing(t, t, t, 5) for name, t in times.items()},
                            dict.fromkeys(times, 1.0), dict.fromkeys(times), {})
        assert result.baseline == baseline
        assert result.ratio(EAGER) == 10.0 / min(handwritten, lean)
        assert result.ratio(baseline) == 1.0
        text, verdicts = step_table([result])
        assert f"**{10.0 / min(handwritten, lean):.2f}**" in text
        assert (f"against {LEAN}" in verdicts[0].target) == (baseline == LEAN)


def test_memory_section_measures_both_handwritten_steps():
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only",
                             "memory"], cwd=ROOT, text=True, capture_output=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("## Peak memory of one step")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| C |")]
    names = [row.split(" | ")[3] for row in rows]
    assert names == 2 * [HANDWRITTEN, LEAN, TUTORIAL, "minigrad eager", "minigrad compiled"]
    assert "every ratio is to the smaller of their two peaks" in section
    assert any(f"| ratio to {name} | ratio to {TUTORIAL} |" in section
               for name in (HANDWRITTEN, LEAN))
