"""Keep a Serve replica's inter-deployment gRPC server on loopback when armed's Ray is a loopback-only node.

Ray Serve 2.60 starts one gRPC server per replica for handle calls between deployments and binds it to `[::]:0`,
every interface, with no setting to change it (ray/serve/_private/replica.py, `_on_initialized`). Ray's token auth
guards it (its gRPC server interceptor), but on a one-machine `armed up` nothing outside the machine has any
business reaching it, and every other Ray process there already listens on 127.0.0.1 only
(armed/serving/local_ray.py). So, only when the node is loopback-only (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`,
which `armed up` sets for every Ray process), the replica binds that server to 127.0.0.1 instead; callers reach a
replica at its node IP, which is then 127.0.0.1 too. On a cluster (the Helm chart) nothing changes.

Each armed deployment calls `keep_replica_grpc_on_loopback()` in its constructor, which Serve runs before it
starts that server. The patch itself is Ray's private API, so it lives in armed/serving/ray_compat.py
(`bind_replica_grpc_to_loopback`, pinned by tests/serve/test_ray_compat.py); tests/security/test_auth_ray.py
checks the listening sockets of a real `armed up`, so a Ray upgrade that renames what is patched shows up as a
failing test, not as a silent open port.
"""

from __future__ import annotations

import os

from armed.log import get_logger
from armed.serving.ray_compat import bind_replica_grpc_to_loopback

log = get_logger("armed.loopback")


def loopback_only_node() -> bool:
    return os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0"


def keep_replica_grpc_on_loopback() -> bool:
    """Patch this replica process so its inter-deployment gRPC server binds 127.0.0.1; True when patched."""
    if not loopback_only_node():
        return False
    if not bind_replica_grpc_to_loopback():
        log.warning("replica_grpc_not_patched", detail="ray.serve._private.replica.add_port_to_grpc_server is gone")
        return False
    return True
