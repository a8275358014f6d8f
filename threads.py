"""The CPU thread policy of every entry point (generate.py, train.py, the tests): import it before torch.

PyTorch's CPU kernels run on an OpenMP pool (GNU libgomp) of one thread per core. A thread that finishes its
share of an operation waits for the next one; by default it spins for 300,000 iterations first, and on a
machine where other processes also want the cores the spinning threads take the time the late ones need. On a
2-core machine with two other busy processes, `generate.py --model demo --duration 8` ran 4 to 30 times slower
with two threads than with one, with identical output. Sleeping at once (OMP_WAIT_POLICY=PASSIVE alone) is
no answer either: a decoding step is hundreds of small operations, and waking the threads for each made the
same command 2.6x slower on an idle machine. The policy (measured in bench/threads.py):

1. Wait briefly, then sleep: `OMP_WAIT_POLICY=PASSIVE` with `GOMP_SPINCOUNT=100000` (a spin of tens of
   microseconds covers the gap between the operations of a step; a longer wait sleeps). OpenMP reads these
   when it starts, so they are set before torch is imported; values the user set are kept.
2. As many threads as cores are free: the cores this process may run on, less the load average of the last
   minute (rounded), at least one. An idle machine gets every core, a busy one fewer (one thread never waits).
3. `--threads N` (or OMP_NUM_THREADS in the environment) overrides the count.
"""

import math
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "100000")


def available_cores() -> int:
    """Cores this process may run on (its affinity mask; a container's CPU quota is not seen)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def free_cores() -> int:
    """Cores not taken by other work: available cores less the 1-minute load average, at least 1."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(available_cores(), math.floor(available_cores() - load + 0.5)))


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """The thread count to use and why: `requested` (--threads), else OMP_NUM_THREADS, else the free cores."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        return requested, "--threads"
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    cores, free = available_cores(), free_cores()
    return free, f"{free} of {cores} cores free (load average {os.getloadavg()[0]:.1f})"


def apply_threads(requested: int | None = None) -> str:
    """Set torch's intra-op threads by the policy; returns a one-line description for the settings printout."""
    import torch

    threads, why = choose_threads(requested)
    torch.set_num_threads(threads)
    wait = f"spin {os.environ['GOMP_SPINCOUNT']}, then sleep" if os.environ["GOMP_SPINCOUNT"] else "libgomp's default"
    return f"{threads} ({why}; OpenMP wait: {wait})"
