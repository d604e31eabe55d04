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
    assert ps.wait_for_migration(lambda: answers.pop(0), PLAN, clock, clock.sleep) is True
    assert clock.t == pytest.approx(4.0)


def test_wait_gives_up_at_the_deadline():
    clock = Clock()
    assert ps.wait_for_migration(lambda: ["ServeReplica:a:A"], PLAN, clock, clock.sleep) is False
    assert clock.t == pytest.approx(60.0)


def test_wait_stops_when_ray_stops_answering():
    """The head going away (KubeRay deleting the old cluster after a switch) ends the wait after FAILED_POLLS polls,
    not at the deadline; one failed poll in between answers does not."""
    clock, answers = Clock(), [RuntimeError("gcs"), ["ServeReplica:a:A"], RuntimeError("gcs"), RuntimeError("gcs"),
                               RuntimeError("gcs")]

    def poll():
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    assert ps.wait_for_migration(poll, PLAN, clock, clock.sleep) is False
    assert answers == [] and clock.t < PLAN.deadline_s


class FakeNode(ps.RayNode):
    def __init__(self, node_id="n1", drain_rc=0, replicas=(), node_error=None):
        self._id, self.drain_rc, self._replicas, self.node_error, self.ran = node_id, drain_rc, list(replicas), \
            node_error, []

    def node_id(self):
        if self.node_error:
            raise self.node_error
        return self._id

    def replicas(self, node_id):
        assert node_id == self._id
        return self._replicas.pop(0) if self._replicas else []

    def run(self, argv):
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
            def node_id(self):  # on a shared host several raylets share one IP; in a pod there is one
                return drained

            def run(self, argv):
                if argv[:2] == ["ray", "stop"]:
                    return subprocess.CompletedProcess(argv, 0, "", "")
                return super().run(argv)

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
