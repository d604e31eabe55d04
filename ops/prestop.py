"""The Ray worker pods' preStop hook: drain this Ray node through GCS, wait for Serve to move its replicas, then stop.

    python -m ops.prestop --deadline-seconds 180 --stop-grace-seconds 30

`ray stop` alone (what the chart ran before) sends SIGTERM to every Ray process at once: the Serve replicas on the
pod die with their in-flight judgments on every eviction, node drain and scale-down. Ray's drain API tells GCS the
node is going away instead (GCS `DrainNode`, the call the v2 autoscaler makes for idle and preempted nodes):

1. Find this pod's Ray node id: `ray drain-node` (Ray 2.60, scripts.py `drain_node`) defaults `--node-id` to
   `ray.get_runtime_context().get_node_id()`, which raises in a fresh process ("Ray has not been initialized"), so
   the hook connects a driver to the local raylet (`ray.init(address="auto")`, the pod's only raylet) and asks it.
2. `ray drain-node --node-id ID --reason DRAIN_NODE_REASON_PREEMPTION --reason-message ...
   --deadline-remaining-seconds D`. PREEMPTION, not IDLE_TERMINATION: the raylet rejects an idle-termination drain
   of a node that runs work, and a pod that is being deleted goes away whether or not it is idle.
3. Serve 2.60 reads the draining nodes from GCS (serve/_private/cluster_node_info_cache.py, get_draining_nodes):
   the deployment state manager starts a replacement for each replica on the node elsewhere and stops the old one
   once it runs (deployment_state.py, migrate_replicas_on_draining_nodes), and the proxy on the node starts
   draining (proxy_state.py), which fails KubeRay's worker readiness probe (it checks the proxy's /-/healthz) and so
   takes the pod out of the Serve Service's endpoints. The hook polls the node's live actors until no
   `ServeReplica:*` actor is left on it, or the deadline passes, or Ray stops answering (FAILED_POLLS polls in a
   row: the head is going away too, as when KubeRay deletes the old cluster after an upgrade, and there is
   nowhere left to migrate to).
4. `ray stop --grace-period G` with what is left of the pod's grace period.

Nothing here may keep a pod from terminating: every step that fails is logged and the hook goes on to `ray stop`.
The pod's terminationGracePeriodSeconds must cover D + G + the time to connect (the chart checks it,
helm/armed/templates/rayservice.yaml). It runs in armed's image (ray is installed; ops/ is copied next to armed/).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("armed.prestop")

DRAIN_REASON = "DRAIN_NODE_REASON_PREEMPTION"
REPLICA_PREFIX = "ServeReplica:"
FAILED_POLLS = 3
# The hook's own budget besides the drain deadline and `ray stop`'s grace: SETUP_S to connect to the raylet and send
# the drain request, STOP_MARGIN_S for `ray stop` to SIGKILL and exit after its grace period, POLL_TIMEOUT_S for one
# state-API poll (never more than what is left of the deadline). Every step is cut at its share, so the whole hook
# ends within deadline + stop grace + SETUP_S + STOP_MARGIN_S: the 30 s the chart adds when it checks the pod's
# terminationGracePeriodSeconds (helm/armed/templates/_helpers.tpl, armed.drain.check).
SETUP_S = 20.0
STOP_MARGIN_S = 10.0
POLL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Plan:
    """The hook's timing: the drain deadline GCS is told, the poll period, and `ray stop`'s grace."""

    deadline_s: int
    stop_grace_s: int
    poll_s: float = 2.0

    def __post_init__(self) -> None:
        if self.deadline_s < 0 or self.stop_grace_s < 0 or self.poll_s <= 0:
            raise ValueError(f"deadline {self.deadline_s}, stop grace {self.stop_grace_s} and poll {self.poll_s} "
                             "seconds must be non-negative (poll positive)")


def drain_command(node_id: str, plan: Plan, pod: str) -> list[str]:
    """`ray drain-node` as Ray 2.60's CLI takes it (all of --reason and --reason-message are required)."""
    return ["ray", "drain-node", "--node-id", node_id, "--reason", DRAIN_REASON,
            "--reason-message", f"pod {pod} is terminating (Kubernetes preStop)",
            "--deadline-remaining-seconds", str(plan.deadline_s)]


def stop_command(plan: Plan) -> list[str]:
    return ["ray", "stop", "--grace-period", str(plan.stop_grace_s)]


def replicas_on(actors: Sequence[dict]) -> list[str]:
    """Names of the live Serve replica actors among `actors` (Ray state API rows of one node)."""
    return [a.get("class_name", "") for a in actors
            if a.get("state") == "ALIVE" and str(a.get("class_name", "")).startswith(REPLICA_PREFIX)]


def wait_for_migration(list_replicas: Callable[[float], list[str]], plan: Plan,
                       clock: Callable[[], float] = time.monotonic,
                       sleep: Callable[[float], None] = time.sleep) -> bool:
    """Poll until no Serve replica is left on the node (True), or the deadline passes or FAILED_POLLS polls in a row
    fail (False). One failing poll counts as "not known yet" (the state API can be briefly unavailable). Each poll
    is given a timeout (its argument): POLL_TIMEOUT_S, never past the deadline; under a second left, no more polls."""
    end = clock() + plan.deadline_s
    failed = 0
    left: list[str] = ["?"]
    while True:
        budget = end - clock()
        if budget < 1.0:  # the state API's timeout is whole seconds: no room for one more poll
            log.warning("drain deadline reached with replicas still on this node: %s", ", ".join(left))
            return False
        try:
            left = list_replicas(min(POLL_TIMEOUT_S, budget))
            failed = 0
        except Exception as exc:  # never abort the hook: it must reach `ray stop`
            failed += 1
            log.warning("listing this node's actors failed (%s), %d in a row", exc, failed)
            if failed >= FAILED_POLLS:
                return False
            left = ["?"]
        if not left:
            return True
        sleep(min(plan.poll_s, max(0.0, end - clock())))


@dataclass
class RayNode:
    """The boundary to the local Ray node (real Ray; tests/ops/test_prestop.py replaces it)."""

    address: str = "auto"

    def node_id(self, timeout_s: float) -> str:
        """Connect a driver to the pod's raylet and ask its node id. `ray.init` takes no timeout: it runs in a daemon
        thread, and the hook goes on without it (no drain, straight to `ray stop`) when it has not answered."""
        found: list[str] = []
        errors: list[BaseException] = []

        def connect() -> None:
            try:
                import ray

                ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False,
                         namespace="armed-prestop")
                found.append(ray.get_runtime_context().get_node_id())
            except BaseException as exc:  # reported to the hook below, which carries on to `ray stop`
                errors.append(exc)

        thread = threading.Thread(target=connect, name="prestop-connect", daemon=True)
        thread.start()
        thread.join(timeout_s)
        if errors:
            raise errors[0]
        if not found:
            raise TimeoutError(f"no answer from the local raylet in {timeout_s:.0f} s")
        return found[0]

    def replicas(self, node_id: str, timeout_s: float) -> list[str]:
        from ray.util.state import list_actors

        return replicas_on([a if isinstance(a, dict) else a.__dict__ for a in
                            list_actors(filters=[("node_id", "=", node_id), ("state", "=", "ALIVE")],
                                        limit=10_000, timeout=max(1, int(timeout_s)),
                                        raise_on_missing_output=False)])

    def run(self, argv: list[str], timeout_s: float) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)


def prestop(plan: Plan, node: RayNode, pod: str, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> dict:
    """Drain, wait, stop, each step cut at its share of the pod's grace period (SETUP_S, the deadline, `ray stop`'s
    grace + STOP_MARGIN_S). Returns what happened (logged as one line by main)."""
    out: dict = {"pod": pod, "node_id": None, "drain_accepted": False, "migrated": False, "stopped": False}
    setup_end = clock() + SETUP_S
    try:
        out["node_id"] = node.node_id(SETUP_S / 2)  # the other half: the drain request
    except Exception as exc:  # no Ray to drain (stopped, never started, not answering): just stop
        log.warning("cannot find this pod's Ray node (%s); stopping without a drain", exc)
    if out["node_id"] and setup_end - clock() < 1:
        log.warning("no time left to send the drain after connecting; stopping without a drain")
    elif out["node_id"]:
        try:
            proc = node.run(drain_command(out["node_id"], plan, pod), setup_end - clock())
        except (OSError, subprocess.SubprocessError) as exc:
            proc = subprocess.CompletedProcess([], -1, "", str(exc))
        out["drain_accepted"] = proc.returncode == 0
        if not out["drain_accepted"]:
            log.warning("ray drain-node refused (%s): %s", proc.returncode, (proc.stderr or proc.stdout).strip()[-500:])
        else:
            out["migrated"] = wait_for_migration(lambda left: node.replicas(out["node_id"], left), plan, clock, sleep)
    try:
        out["stopped"] = node.run(stop_command(plan), plan.stop_grace_s + STOP_MARGIN_S).returncode == 0
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("ray stop failed: %s", exc)
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m ops.prestop", description=__doc__.split("\n\n")[0])
    ap.add_argument("--deadline-seconds", type=int, required=True,
                    help="drain deadline told to GCS; the longest the hook waits for Serve to move replicas")
    ap.add_argument("--stop-grace-seconds", type=int, required=True, help="`ray stop --grace-period`")
    ap.add_argument("--address", default="auto", help="Ray address (default: the local node's)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s armed-prestop %(levelname)s %(message)s")
    try:
        plan = Plan(a.deadline_seconds, a.stop_grace_seconds)
    except ValueError as exc:
        ap.error(str(exc))
    result = prestop(plan, RayNode(a.address), os.environ.get("HOSTNAME", "?"))
    log.info("%s", result)
    return 0  # a preStop hook's exit status only produces an event; termination goes on regardless


if __name__ == "__main__":
    sys.exit(main())
