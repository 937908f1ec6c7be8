"""vaegan's offline half: data sets, the training loop, attribute vectors, evaluation, the judge.

OpenMP threads that wait for each other spin by default, so a training step beside any other busy
process (another run, a test suite, a neighbour on a shared node) loses most of a core to
spinning: measured 42% of quiet speed beside one busy core, against 66% with passive waiting,
which costs about 10% on an idle machine (docs/benchmarks.md, "Beside a noisy neighbour").
libgomp reads the policy once, when torch first loads it, so it is set here, before any module
of this package imports torch; OMP_WAIT_POLICY=ACTIVE in the environment keeps the spinning.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
