"""`armed up; armed down`, twice: nothing of either Ray is left running or listening (issue 24, item 6).

The defect: `ray start --head` also starts Ray's client server (`ray.util.client.server`, port 10001), whose command
line names neither the session dir nor a parent that stays, so `armed down` (which ends the processes of its Ray's
session dir) left it running, parented to init; the next `armed up` found two listeners. Here the real CLI runs as a
subprocess (zero-work engines: `python -m armed_testing.cli`) on the light test profile, its own ARMED_RAY_DIR and
port; what is left is found independently of armed's own process search: any process of this user whose command
line names the Ray's temp dir or its GCS address, and any port that Ray listened on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from armed.serving import local_ray

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]
REPO = Path(__file__).resolve().parents[2]


def _armed(args: list[str], ray_dir: Path, module: str = "armed.cli") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ARMED_RAY_DIR": str(ray_dir), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("ARMED_API_KEY", None)
    return subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                          timeout=400, cwd=REPO)


def _of_this_ray(record: local_ray.RayRecord) -> list[psutil.Process]:
    """Every process of this user naming the Ray's temp dir or GCS address anywhere in its command line, and their
    descendants (a wider net than armed's own search, on purpose)."""
    me = psutil.Process()
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline", "username"]):
        try:
            if proc.pid == me.pid or proc.info["username"] != me.username():
                continue
            line = " ".join(proc.info["cmdline"] or ())
            if record.temp_dir in line or record.address in line:
                found[proc.pid] = proc
                found.update((c.pid, c) for c in proc.children(recursive=True))
        except psutil.Error:
            continue
    return list(found.values())


def test_up_down_twice_leaves_no_process_and_no_listener(profile_path: str) -> None:
    ray_dir = Path(tempfile.mkdtemp(prefix="aud-", dir="/tmp"))  # short: Ray's socket paths live under it
    home = local_ray.home(ray_dir)
    port = local_ray.free_port()
    records: list[local_ray.RayRecord] = []
    try:
        for round_ in (1, 2):
            up = _armed(["up", "--profile", profile_path, "--port", str(port), "--timeout", "300"], ray_dir,
                        module="armed_testing.cli")
            assert up.returncode == 0, (round_, up.stderr[-3000:])
            record = home.read_record()
            assert record is not None
            records.append(record)
            procs = _of_this_ray(record)
            ports = {p for *_, p in local_ray.listening_sockets(procs)}
            gcs_port = int(record.address.rpartition(":")[2])
            assert {port, gcs_port, record.metrics_port} <= ports, (round_, ports)  # the net caught the stack

            down = _armed(["down"], ray_dir)
            assert down.returncode == 0 and "armed is down" in down.stdout, down.stderr[-2000:]
            left = [(p.pid, " ".join(p.cmdline())[:200]) for p in procs if p.is_running()
                    and p.status() != psutil.STATUS_ZOMBIE]
            assert left == [], (round_, left)
            assert _of_this_ray(record) == [], round_
            listening = [p for p in sorted(ports) if local_ray.port_open("127.0.0.1", p, timeout=0.5)]
            assert listening == [], (round_, listening)
    finally:
        _armed(["down"], ray_dir)
        local_ray.stop(home)
        for record in records:  # whatever this test's Rays left behind when it failed, and only that
            for proc in _of_this_ray(record):
                proc.kill()
        shutil.rmtree(ray_dir, ignore_errors=True)
