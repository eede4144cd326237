import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

# The CUDA kernels are tested under numba-cuda's simulator unless a run asks for the real GPU with
# NUMBA_ENABLE_CUDASIM=0. Numba reads this when it is first imported, which happens after conftest.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
