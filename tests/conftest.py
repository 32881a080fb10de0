"""Test-suite-wide settings.

Hypothesis: no deadline (a first call into torch pays one-off dispatch costs that are no sign of a
slow test). Tests that cover a parametrized option grid set their own small ``max_examples``.

The profile derives from hypothesis' "default" profile, not from whatever is active: under CI=true
hypothesis activates its "ci" profile, whose ``derandomize=True`` implies ``database=None``, and with
that hypothesis 6.170 overflows the stack (RecursionError in ``settings.database``) after about 950
parametrized tests of one function. Reproducible CI runs come from ``--hypothesis-seed`` in the
Makefile instead.
"""

import pytest
from hypothesis import settings

settings.register_profile("torchseq", settings.get_profile("default"), deadline=None, print_blob=True)
settings.load_profile("torchseq")


def pytest_configure(config: pytest.Config) -> None:
    # torch's notice that float32 CPU LSTMs with proj_size skip oneDNN: expected, and not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:LSTM with projections is not supported with oneDNN")
