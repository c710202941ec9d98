"""The optimizer-cost benchmark compares like with like: its plain NumPy update and
`optim.RMSPropNesterov` give the same trajectory, bit for bit, on the adder's parameters (no
timing is asserted)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.optim_step import plain_rmsprop_nesterov
from minigrad import optim
from minigrad.models.reference import Param


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), lr=st.floats(1e-3, 0.5), decay=st.floats(0.0, 0.99),
       momentum=st.floats(0.0, 0.95))
def test_plain_update_and_optimizer_agree(seed, lr, decay, momentum):
    rng = np.random.default_rng(seed)
    shapes = [(2, 3), (3,), (3, 3), (3,), (3,), (3, 1), (1,)]  # the adder's, at case A
    start = [rng.normal(size=s) for s in shapes]
    plain = [Param(x.copy()) for x in start]
    ours = [Param(x.copy()) for x in start]
    hyper = {"lr": lr, "decay": decay, "momentum": momentum, "eps": 1e-6}
    steps = [plain_rmsprop_nesterov(plain, **hyper), optim.RMSPropNesterov(ours, **hyper).step]
    for params, step in zip((plain, ours), steps, strict=True):
        for k in range(4):
            def closure(params=params, k=k) -> float:
                for p in params:
                    p.grad = np.sin(3 * p.data + k)
                return 0.0

            step(closure)
    for a, b in zip(plain, ours, strict=True):
        np.testing.assert_array_equal(a.data, b.data)
