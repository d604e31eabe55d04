"""`make test`: the suite as two pytest processes side by side, the Ray tests in one and everything else in the other.

Most of the Ray tests' wall time is waiting (for actors, replicas, Serve's control loop, HTTP), and that of the rest is
CPU: run one after the other they left this 2-core machine half idle (18.7 min wall for 9.5 min of CPU, 2026-12-06).
Tests that start a Ray cluster are marked `ray_cluster` (tests/conftest.py fails an unmarked test that leaves a Ray
initialised), so only one Ray runs at a time, as before: two would share /tmp/ray's session link and halve each
other's CPU under the timing checks.

    python -m tests.parallel [PYTEST ARGS...]

The arguments go to both processes (`-x`, `-k`, paths...); `--junitxml=F` writes F-ray.xml and F-rest.xml. Each
line of output carries its process's prefix. The exit status is the worse of the two (a part killed by a signal,
e.g. a segfault, is 128+N); a part that collected nothing (exit 5, e.g. a path with no Ray test) counts as passed
when the other one ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

NO_TESTS_COLLECTED = 5


@dataclass(frozen=True)
class Part:
    name: str
    marker: str
    niceness: int  # added to this process's: the Ray part is the longer one, so it keeps the CPU when both want it


# Ray runs its workers (Serve's replicas, controller, proxy) at niceness 15 (Ray's worker_niceness): at the same
# priority as the rest part's CPU-bound tests they lost the CPU to them and the Ray part, the critical path, stretched
# (~710 s alone, 880 s beside the rest); the rest part has time to spare.
PARTS = (Part("ray", "ray_cluster", 0), Part("rest", "not ray_cluster", 19))


def part_args(part: Part, args: list[str], basetemp: Path) -> list[str]:
    """pytest's argv for one part: its marker, its own base temp folder, its own junit file."""
    out = ["-m", part.marker, f"--basetemp={basetemp / part.name}"]
    for arg in args:
        if arg.startswith("--junitxml="):
            path = Path(arg.split("=", 1)[1])
            suffix = path.suffix or ".xml"
            arg = f"--junitxml={path.with_name(f'{path.stem}-{part.name}{suffix}')}"
        out.append(arg)
    return out


def combined_status(codes: list[int]) -> int:
    """The worse of the parts' exit codes; 'no tests collected' only when no part ran a test. A part killed by a
    signal (Popen's -N: a segfault is -11) is 128+N, as a shell reports it, never 0."""
    codes = [128 - c if c < 0 else c for c in codes]
    ran = [c for c in codes if c != NO_TESTS_COLLECTED]
    if not ran:
        return NO_TESTS_COLLECTED
    return max(ran)


def _relay(stream: IO[str], prefix: str, lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            sys.stdout.write(f"[{prefix}] {line}")
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a == "-m" or a.startswith("-m=") for a in args):
        print("tests.parallel: -m is its own (ray_cluster / not ray_cluster); run `python -m pytest -m ...` instead",
              file=sys.stderr)
        return 4
    # Short: Ray's socket paths can live under a test's tmp_path.
    basetemp = Path(tempfile.mkdtemp(prefix="apt-", dir="/tmp"))
    lock = threading.Lock()
    procs, relays = [], []
    for part in PARTS:
        p = subprocess.Popen([sys.executable, "-m", "pytest", *part_args(part, args, basetemp)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                             preexec_fn=(lambda n=part.niceness: os.nice(n)) if part.niceness else None)
        t = threading.Thread(target=_relay, args=(p.stdout, part.name, lock), daemon=True)
        t.start()
        procs.append(p)
        relays.append(t)
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    for t in relays:
        t.join(timeout=10)
    status = combined_status(codes)
    print(" · ".join(f"{part.name}: exit {code}" for part, code in zip(PARTS, codes, strict=True)) +
          f" → {status}")
    if status == 0:
        shutil.rmtree(basetemp, ignore_errors=True)
    else:
        print(f"test folders kept under {basetemp}")
    return status


if __name__ == "__main__":
    sys.exit(main())
