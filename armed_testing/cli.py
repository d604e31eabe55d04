"""`python -m armed_testing.cli [--keep-profile-engines] {up,perf,fuzz} ARGS...`: armed's commands on zero-work engines.

The product's CLI cannot name a double (no flag, setting or Serve config arg selects one). This entry point, which
ships only in a source checkout, parses the product's own arguments and passes the doubles in as Python objects:

- `up ARGS`: `armed up` with `ZeroWork()` in every model app (tests/security/test_auth_ray.py).
- `perf ARGS`: `armed-ops perf` (ops/perf) with the zero-work engine classes its DAG-overhead, synthetic-batching,
  autoscaling and cost scenarios need, and `ZeroWork()` in the profile stack too (e2e, caching, per-model), unless
  `--keep-profile-engines` (then that stack runs the profile's real engines, as the published benchmarks did).
- `fuzz ARGS`: `armed-ops fuzz` (`python -m ops.fuzz`) with `ZeroWork()` in a --local-stack's model apps (what
  `--all-roles` needs), unless `--keep-profile-engines`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from armed_testing.zero_work import ZeroWork

COMMANDS = ("up", "perf", "fuzz")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m armed_testing.cli", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep-profile-engines", action="store_true",
                    help="perf / fuzz: the profile stack keeps the profile's real engines")
    ap.add_argument("command", choices=COMMANDS)
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="the command's own arguments")
    ns = ap.parse_args(argv)
    engine_cls = None if ns.keep_profile_engines else ZeroWork()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ns.command == "fuzz":
        from ops.fuzz.cli import add_arguments, run_args

        fuzz = argparse.ArgumentParser(prog="python -m armed_testing.cli fuzz")
        add_arguments(fuzz)
        return run_args(fuzz.parse_args(ns.rest), engine_cls=engine_cls)
    if ns.command == "up":
        from armed.cli import build_parser
        from armed.serving.cli import cmd_up

        return cmd_up(build_parser().parse_args([ns.command, *ns.rest]), engine_cls=ZeroWork())
    # perf is armed-ops' (ops/perf: it deploys serve_apps, above armed): its own parser and command, doubles passed in
    from ops.cli import parser as ops_parser
    from ops.perf.cli import cmd_perf

    return cmd_perf(ops_parser().parse_args([ns.command, *ns.rest]), zero_work=ZeroWork, engine_cls=engine_cls)


if __name__ == "__main__":
    sys.exit(main())
