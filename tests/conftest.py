"""Hypothesis settings for the whole suite, in one place.

`ci` (selected by .ci/run through HYPOTHESIS_PROFILE) is derandomized, so a run is the same
run every time; `dev` (the default) explores new examples on every run.
"""

import os

from hypothesis import HealthCheck, settings

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
