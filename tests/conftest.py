"""Hypothesis settings for the whole suite, in one place, and one BLAS thread.

`ci` (selected by .ci/run through HYPOTHESIS_PROFILE) is derandomized, so a run is the same
run every time; `dev` (the default) explores new examples on every run.
"""

import os

import numpy  # noqa: F401 (loaded here so that its BLAS can be limited)
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

# One BLAS thread, as the `minigrad` command runs: the suite's matrices are small, and
# more threads only wait on each other (see the README's "The models and their command").
threadpool_limits(1, user_api="blas")

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
