"""The CPU thread policy (threads.py) against fixed thread counts, on an idle and on a busy machine.

    python bench/threads.py [--busy 2] [--rounds 3] [--duration 8]

Runs `generate.py "Lo-fi funk" --model demo --duration 8` (the bundled demo model) in fresh processes, the
variants in turn, round after round: one thread; two threads with libgomp's default wait (spin 300,000
iterations, then sleep: what every run did before the policy); two threads that sleep at once (PASSIVE, no
spin); two threads with the policy's wait (a short spin, then sleep); and the policy's default (no --threads).
Then the same with `--busy` other processes spinning on the CPU (a user's busy laptop). Prints the median
generation seconds (model loading excluded) and each variant's ratio to the best fixed setting under the same
load.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # (generate.py options, environment); an empty value is unset for libgomp, and threads.py keeps it
    "1 thread": (["--threads", "1"], {}),
    "2 threads, default wait (before)": (["--threads", "2"], {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": ""}),
    "2 threads, sleep at once": (["--threads", "2"], {"GOMP_SPINCOUNT": "0"}),
    "2 threads, the policy's wait": (["--threads", "2"], {}),
    "policy (default)": ([], {}),
}


def generation_seconds(extra: list[str], env: dict, duration: float, folder: str,
                       timeout: float) -> tuple[float, str]:
    """Generation seconds of one run (load excluded), or `timeout` (reported as a lower bound) if it ran longer."""
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                                                     "GOMP_SPINCOUNT")}
    command = [sys.executable, str(ROOT / "generate.py"), "Lo-fi funk", "--model", "demo", "--duration",
               str(duration), "--seed", "0", "--output", f"{folder}/clip.wav", *extra]
    try:
        out = subprocess.run(command, capture_output=True, text=True, env={**environment, **env}, check=True,
                             timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return timeout, "?"
    seconds = float(re.search(r"of audio in ([0-9.]+) s", out).group(1))
    threads = re.search(r"^threads\s+(.*)$", out, re.MULTILINE).group(1)
    return seconds, threads


def measure(rounds: int, duration: float, timeout: float) -> tuple[dict[str, list[float]], str]:
    times, chosen = {name: [] for name in VARIANTS}, ""
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            for name, (extra, env) in VARIANTS.items():
                seconds, threads = generation_seconds(extra, env, duration, folder, timeout)
                times[name].append(seconds)
                chosen = threads if name == "policy (default)" else chosen
    return times, chosen


def report(label: str, times: dict[str, list[float]], chosen: str) -> None:
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    best = min(seconds for name, seconds in medians.items() if name != "policy (default)")
    print(f"\n{label} (load average {os.getloadavg()[0]:.1f}); the policy chose: {chosen}")
    print(f"{'variant':40}{'median s':>10}{'vs best':>15}   rounds (a run stopped at --timeout counts as it)")
    for name, seconds in medians.items():
        rounds = " ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:40}{seconds:10.2f}{seconds / best:14.2f}x   {rounds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=2, help="other processes spinning during the busy runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--skip-idle", action="store_true", help="only the busy machine")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds after which a run is stopped and counted as taking that long (a lower bound)")
    args = parser.parse_args()
    print(f"settings: {vars(args)}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    if not args.skip_idle:
        report("idle machine", *measure(args.rounds, args.duration, args.timeout))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        report(f"{args.busy} busy processes", *measure(args.rounds, args.duration, args.timeout))
    finally:
        for spinner in spinners:
            spinner.kill()


if __name__ == "__main__":
    main()
