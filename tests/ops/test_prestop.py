"""The Ray workers' preStop hook (ops/prestop.py): drain through GCS, wait for Serve to move the replicas, stop.

The unit tests replace the Ray boundary (RayNode); the slow test runs the hook's drain and wait against a real
multi-node local Ray with a real Serve replica, and checks Serve moved it to another node before the hook returned.
It never runs the real `ray stop` (on a shared machine it would stop every Ray on the host)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops import prestop as ps

pytestmark = pytest.mark.ray_cluster

PLAN = ps.Plan(deadline_s=60, stop_grace_s=20, poll_s=2.0)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_drain_command_is_what_ray_2_60_accepts():
    """The argv parses with Ray's own `ray drain-node` click command (all required options, a valid reason)."""
    from ray.scripts.scripts import drain_node

    argv = ps.drain_command("ab" * 28, PLAN, "armed-worker-0")
    assert argv[:2] == ["ray", "drain-node"]
    ctx = drain_node.make_context("drain-node", argv[2:])
    assert ctx.params["reason"] == "DRAIN_NODE_REASON_PREEMPTION"
    assert ctx.params["deadline_remaining_seconds"] == 60
    assert ctx.params["node_id"] == "ab" * 28 and "armed-worker-0" in ctx.params["reason_message"]
    assert ps.stop_command(PLAN) == ["ray", "stop", "--grace-period", "20"]


def test_replicas_on_counts_only_live_serve_replicas():
    rows = [{"class_name": "ServeReplica:judge:Judge", "state": "ALIVE"},
            {"class_name": "ServeReplica:judge:Judge", "state": "DEAD"},
            {"class_name": "ProxyActor", "state": "ALIVE"},
            {"class_name": "ServeController", "state": "ALIVE"}]
    assert ps.replicas_on(rows) == ["ServeReplica:judge:Judge"]


def test_wait_returns_when_the_replicas_are_gone():
    clock, answers = Clock(), [["ServeReplica:a:A"], ["ServeReplica:a:A"], []]
    assert ps.wait_for_migration(lambda _: answers.pop(0), PLAN, clock, clock.sleep) is True
    assert clock.t == pytest.approx(4.0)


def test_wait_gives_up_at_the_deadline():
    clock = Clock()
    assert ps.wait_for_migration(lambda _: ["ServeReplica:a:A"], PLAN, clock, clock.sleep) is False
    assert clock.t == pytest.approx(60.0)


def test_wait_stops_when_ray_stops_answering():
    """The head going away (KubeRay deleting the old cluster after a switch) ends the wait after FAILED_POLLS polls,
    not at the deadline; one failed poll in between answers does not."""
    clock, answers = Clock(), [RuntimeError("gcs"), ["ServeReplica:a:A"], RuntimeError("gcs"), RuntimeError("gcs"),
                               RuntimeError("gcs")]

    def poll(_timeout_s):
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    assert ps.wait_for_migration(poll, PLAN, clock, clock.sleep) is False
    assert answers == [] and clock.t < PLAN.deadline_s


class FakeNode(ps.RayNode):
    """The Ray boundary; with `clock`, every call takes its whole timeout (a raylet, state API and CLI that answer
    only at the last moment: the hook's worst case)."""

    def __init__(self, node_id="n1", drain_rc=0, replicas=(), node_error=None, clock=None):
        self._id, self.drain_rc, self._replicas, self.node_error, self.ran = node_id, drain_rc, list(replicas), \
            node_error, []
        self.clock, self.timeouts = clock, []

    def _take(self, what, timeout_s):
        self.timeouts.append((what, timeout_s))
        if self.clock is not None:
            self.clock.t += timeout_s

    def node_id(self, timeout_s):
        self._take("connect", timeout_s)
        if self.node_error:
            raise self.node_error
        return self._id

    def replicas(self, node_id, timeout_s):
        assert node_id == self._id
        self._take("poll", timeout_s)
        return self._replicas.pop(0) if self._replicas else ["ServeReplica:a:A"] if self.clock else []

    def run(self, argv, timeout_s):
        self._take(argv[1], timeout_s)
        self.ran.append(argv[:2])
        return subprocess.CompletedProcess(argv, self.drain_rc if argv[1] == "drain-node" else 0, "", "refused")


def test_prestop_drains_then_stops():
    node = FakeNode(replicas=[["ServeReplica:a:A"], []])
    out = ps.prestop(ps.Plan(5, 1, poll_s=0.01), node, "pod-0")
    assert node.ran == [["ray", "drain-node"], ["ray", "stop"]]
    assert out == {"pod": "pod-0", "node_id": "n1", "drain_accepted": True, "migrated": True, "stopped": True}


@pytest.mark.parametrize("node", [FakeNode(drain_rc=1), FakeNode(node_error=ConnectionError("no ray"))],
                         ids=["drain-refused", "no-ray"])
def test_prestop_always_reaches_ray_stop(node):
    out = ps.prestop(ps.Plan(5, 1, poll_s=0.01), node, "pod-0")
    assert node.ran[-1] == ["ray", "stop"] and out["stopped"] and not out["migrated"]


def test_the_whole_hook_ends_within_the_grace_period_the_chart_checks():
    """Worst case: the raylet, the drain request, every state-API poll and `ray stop` each take their whole timeout,
    and the replica never leaves. The hook still ends within deadline + stop grace + 30 s, the pod grace period the
    chart requires (armed.drain.check), so the kubelet never kills it before `ray stop` has run."""
    clock = Clock()
    plan = ps.Plan(deadline_s=300, stop_grace_s=30, poll_s=2.0)
    node = FakeNode(clock=clock)
    out = ps.prestop(plan, node, "pod-0", clock, clock.sleep)
    assert node.ran[-1] == ["ray", "stop"] and out["drain_accepted"] and not out["migrated"]
    assert ps.SETUP_S + ps.STOP_MARGIN_S == 30
    assert clock.t <= plan.deadline_s + plan.stop_grace_s + 30
    polls = [t for what, t in node.timeouts if what == "poll"]
    assert max(polls) <= ps.POLL_TIMEOUT_S and node.timeouts[-1] == ("stop", 40)


def test_a_raylet_that_never_answers_is_given_up_on_and_ray_still_stops():
    clock = Clock()
    node = FakeNode(clock=clock, node_error=TimeoutError("no answer from the local raylet in 10 s"))
    out = ps.prestop(ps.Plan(300, 30), node, "pod-0", clock, clock.sleep)
    assert node.ran == [["ray", "stop"]] and out["stopped"] and out["node_id"] is None
    assert clock.t == ps.SETUP_S / 2 + 30 + ps.STOP_MARGIN_S  # connect cut at its half of SETUP_S, then stop


def test_the_connect_timeout_is_real():
    """RayNode.node_id gives up on a ray.init that does not answer (an address nothing listens on: Ray retries for a
    minute or more) at its timeout. In a subprocess: the abandoned ray.init must not linger in the test process."""
    import time

    code = ("from ops.prestop import RayNode\n"
            "try:\n    RayNode(address='127.0.0.1:9').node_id(3.0)\n"
            "except TimeoutError as exc:\n    print('gave up:', exc)\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert "gave up: no answer from the local raylet in 3 s" in proc.stdout, proc.stderr[-2000:]
    assert time.monotonic() - start < 25


def test_bad_arguments_name_the_flag(capsys):
    with pytest.raises(SystemExit):
        ps.main(["--deadline-seconds", "-1", "--stop-grace-seconds", "5"])
    assert "deadline" in capsys.readouterr().err


# ---- a real Ray: the drain moves a Serve replica to another node -----------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_drain_moves_a_real_serve_replica(monkeypatch):
    import shutil
    import tempfile

    ray = pytest.importorskip("ray")
    from ray import serve
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    # A private temp dir (short: Ray's socket paths must fit 107 bytes) and free ports: other Ray clusters may run
    # on this host.
    root = tempfile.mkdtemp(prefix="prestop-", dir="/tmp")
    tmp = f"{root}/ray"
    Path(tmp).mkdir()
    monkeypatch.setenv("RAY_TMPDIR", root)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "gcs_server_port": _free_port(), "dashboard_port": _free_port(), "include_dashboard": True,
        "dashboard_agent_listen_port": _free_port(), "temp_dir": tmp})
    try:
        cluster.add_node(num_cpus=1)
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)  # what `ray drain-node` resolves, as in a pod
        monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # the `ray` CLI
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": _free_port()})

        @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.5})
        class Echo:
            def __call__(self, _):
                return "ok"

        serve.run(Echo.bind(), name="echo", route_prefix="/e")

        def replica_nodes():
            return [a.node_id for a in list_actors(filters=[("state", "=", "ALIVE")])
                    if a.class_name.startswith(ps.REPLICA_PREFIX)]

        (drained,) = replica_nodes()

        class Node(ps.RayNode):
            def node_id(self, timeout_s):  # on a shared host several raylets share one IP; in a pod there is one
                return drained

            def run(self, argv, timeout_s):
                if argv[:2] == ["ray", "stop"]:
                    return subprocess.CompletedProcess(argv, 0, "", "")
                return super().run(argv, timeout_s)

        cluster.add_node(num_cpus=1)  # somewhere to migrate to (in a cluster, a node the autoscaler adds)
        out = ps.prestop(ps.Plan(deadline_s=90, stop_grace_s=5), Node(), "pod-0")
        assert out["drain_accepted"] and out["migrated"], out
        (now,) = replica_nodes()
        assert now != drained
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)
