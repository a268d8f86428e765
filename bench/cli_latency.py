"""Wall time of `tlcli --help` (goal < 0.5 s), in fresh processes, against a bare Python start.

    python bench/cli_latency.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "tlcli --help": ["-m", "tlcli", "--help"],
    "tlcli extract --help": ["-m", "tlcli", "extract", "--help"],
}


def wall_times(arguments: list[str], runs: int) -> list[float]:
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, *arguments], env=environment, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    results = {}
    print(f"{'command':<24}{'min s':>8}{'median s':>10}{'max s':>8}")
    for name, arguments in COMMANDS.items():
        wall_times(arguments, 1)  # warm the file cache
        times = wall_times(arguments, args.runs)
        results[name] = {"min": round(min(times), 3), "median": round(statistics.median(times), 3),
                         "max": round(max(times), 3), "runs": [round(t, 3) for t in times]}
        print(f"{name:<24}{min(times):>8.3f}{statistics.median(times):>10.3f}{max(times):>8.3f}")
    print(f"tlcli --help median: {results['tlcli --help']['median']:.3f} s (goal < 0.5 s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"written: {save('cli_latency', {'results': results, 'load_average': os.getloadavg(), 'machine': machine()})}")


if __name__ == "__main__":
    main()
