"""Autoscaling on a real local Ray: load on one model raises its replicas, leaves the others alone, then drains.

Replica counts come from serve.status(), never from latencies (the box is shared and noisy).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.serve.conftest import deploy_roles, replica_count, write_profile

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]


def test_load_on_embedder_scales_it_up_and_back_down(
    serve_port: int, profile_data: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from ray import serve

    from armed_testing.zero_work import ZeroWork

    data = profile_data
    data["models"]["embedder"]["replicas"] = {"min": 1, "max": 3, "initial": 1}
    data["models"]["embedder"]["autoscaling"].update(target_ongoing_requests=1, upscale_delay_s=1, downscale_delay_s=3)
    data["models"]["embedder"]["batching"] = {"max_batch_size": 1, "batch_wait_timeout_s": 0}
    data["models"]["consistency"]["replicas"] = {"min": 1, "max": 3, "initial": 1}
    path = write_profile(tmp_path_factory.mktemp("auto"), data)
    deploy_roles(path, ("embedder", "consistency"), ZeroWork(delay_s=0.2))
    assert replica_count("embedder", "embedder") == 1
    emb = serve.get_deployment_handle("embedder", "embedder")

    async def load(seconds: float, clients: int = 12) -> int:
        stop = time.monotonic() + seconds
        peak = 1

        async def one() -> None:
            while time.monotonic() < stop:
                await emb.embed.remote(["load"])

        async def watch() -> None:
            nonlocal peak
            while time.monotonic() < stop:
                peak = max(peak, await asyncio.to_thread(replica_count, "embedder", "embedder"))
                if peak > 1:
                    return
                await asyncio.sleep(0.5)

        await asyncio.gather(watch(), *(one() for _ in range(clients)))
        return peak

    peak = asyncio.run(load(15))
    assert peak > 1, "12 concurrent clients against target_ongoing_requests=1 never added a replica"
    assert replica_count("consistency", "consistency") == 1, "an idle deployment was scaled with the loaded one"
    deadline = time.monotonic() + 30
    while replica_count("embedder", "embedder") > 1 and time.monotonic() < deadline:
        time.sleep(1)
    assert replica_count("embedder", "embedder") == 1, "replicas did not come back down after the load"
