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
3. `--threads N` (or OMP_NUM_THREADS in the environment) overrides the count, up to the cores (`--threads 999`
   was 10-70x slower than the default). More threads than free cores is said in the settings line, and those
   threads sleep at once (GOMP_SPINCOUNT=0, when torch has not loaded yet and the user set no wait): with two
   other busy processes, two threads that spin first took over 60 s where the default took 2.2 s; sleeping at
   once, 4.4 s (bench/threads.py).
"""

import math
import os
import sys

USER_WAIT = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ  # the user's wait is kept
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
    """The thread count to use and why: `requested` (--threads), else OMP_NUM_THREADS, else the free cores; an
    asked count is capped at the cores, and one above the free cores is said to oversubscribe the machine."""
    cores, free = available_cores(), free_cores()
    load = f"load average {os.getloadavg()[0]:.1f}"
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        asked, source = requested, f"--threads {requested}"
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        asked, source = int(os.environ["OMP_NUM_THREADS"]), f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    else:
        return free, f"{free} of {cores} cores free ({load})"
    threads = min(asked, cores)
    why = source + (f", capped at the {cores} cores" if asked > cores else "")
    if threads > free:
        why += (f"; oversubscribed: only {free} of {cores} cores are free ({load}), so the threads wait for each "
                f"other: the default ({free}) is faster")
    return threads, why


def apply_threads(requested: int | None = None) -> str:
    """Set torch's intra-op threads by the policy; returns a one-line description for the settings printout.
    Called before torch loads, threads that oversubscribe the machine are set to sleep at once."""
    threads, why = choose_threads(requested)
    if threads > free_cores() and not USER_WAIT and "torch" not in sys.modules:  # OpenMP reads it as torch loads
        os.environ["GOMP_SPINCOUNT"] = "0"
    import torch

    torch.set_num_threads(threads)
    spin = os.environ["GOMP_SPINCOUNT"]
    wait = "sleep at once" if spin == "0" else f"spin {spin}, then sleep" if spin else "libgomp's default"
    return f"{threads} ({why}; OpenMP wait: {wait})"
