"""CrossFlow reproduction library.

Importing it sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it (before torch loads OpenMP, which
reads it once): OpenMP's default spin-waiting makes a 2-thread process several times slower whenever the other
core is busy (measured by ``make bench``, section Threads). It only takes effect when crossflow is imported
before torch; the Makefile and the project's Jupyter kernel set it in the environment as well.
"""
import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
