"""Pod probes of the armed chart (standard library only; runs in the Ray image).

usage: probe.py head|worker live|ready

live   the node's raylet answers (and, on the head, the GCS): a hung node is restarted; a Serve problem is not
       a reason to kill a node, so liveness never looks at Serve.
ready  worker: live, and the node's Serve HTTP proxy answers /-/healthz (what KubeRay checks by default);
       head: live, and (ARMED_PROBE_SERVE=1) no Serve application is UNHEALTHY or DEPLOY_FAILED. A replica whose
       check_health fails or times out (the profile's health_check_timeout_s) turns its application UNHEALTHY,
       so a stuck replica surfaces as an unready head pod and in `armed-ops status`, not as a live cluster.
"""

import json
import os
import sys
import urllib.request

TIMEOUT = float(os.environ.get("ARMED_PROBE_TIMEOUT", "4"))
BAD_APP_STATES = {"UNHEALTHY", "DEPLOY_FAILED"}


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}")
        return resp.read().decode("utf-8", "replace")


def live(kind: str) -> None:
    if "success" not in get("http://127.0.0.1:52365/api/local_raylet_healthz"):
        raise RuntimeError("raylet is not healthy")
    if kind == "head" and "success" not in get("http://127.0.0.1:8265/api/gcs_healthz"):
        raise RuntimeError("GCS is not healthy")


def ready(kind: str) -> None:
    live(kind)
    if kind == "worker":
        get("http://127.0.0.1:8000/-/healthz")
        return
    if os.environ.get("ARMED_PROBE_SERVE", "1") != "1":
        return
    apps = json.loads(get("http://127.0.0.1:8265/api/serve/applications/")).get("applications") or {}
    bad = {name: app.get("status") for name, app in apps.items() if app.get("status") in BAD_APP_STATES}
    if bad:
        raise RuntimeError(f"Serve applications not healthy: {bad}")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("head", "worker") or argv[2] not in ("live", "ready"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        (live if argv[2] == "live" else ready)(argv[1])
    except Exception as exc:
        print(f"probe {argv[1]} {argv[2]} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
