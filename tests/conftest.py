import os
import sys

import pytest
from hypothesis import HealthCheck, Phase, settings

sys.path.insert(0, os.path.dirname(__file__))

# The CUDA kernels are tested under numba-cuda's simulator unless a run asks for the real GPU with
# NUMBA_ENABLE_CUDASIM=0. Numba reads this when it is first imported, which happens after conftest.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
# The CPU kernels' path choices come from the safe table (kernels/cpu/tuning.py), not from a measurement a
# developer saved on this machine: tests that expect a path would otherwise depend on whoever ran `rnnspec tune`
os.environ.setdefault("RNNSPEC_CPU_TUNING", "safe")

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
# hand-mutant runs (pytest --hypothesis-profile=mutants): a failing case is reported as found, unshrunk;
# shrinking one against the oracle took a mutant's run of tests/test_rows.py from about 1 to 15 minutes
settings.register_profile("mutants", deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def safe_table(monkeypatch):
    """The safe values of the CPU kernels' thresholds in force, read afresh (for tests of the choices they make)."""
    from rnnspec.kernels.cpu import tuning

    monkeypatch.setenv(tuning.ENVIRONMENT, "safe")
    tuning.reload()
    yield
    tuning.reload()
