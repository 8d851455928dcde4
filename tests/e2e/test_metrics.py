"""Every service's /metrics shows what it did: jobs submitted and ended, how long they
waited and ran (control plane); runs by language and verdict, slots and claims (worker);
sweeps of the dead letters (recovery)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice.client import SluiceClient
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job, wait_for_languages
from tests.support.broker import RunVhost
from tests.support.platform import Platform, free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def stack(vhost: RunVhost, tmp_path: Path) -> AsyncIterator[tuple[Platform, dict[str, int]]]:
    ports = {"control-plane": free_port(), "worker": free_port(), "recovery": free_port()}
    platform = Platform(tmp_path, vhost.amqp_url(), prefix=f"{tmp_path.name}-metrics",
                        extra_env={"SLUICE_WORKER_SLOTS": "2",
                                   "SLUICE_RECOVERY_INTERVAL_S": "0.5"})
    try:
        await asyncio.to_thread(platform.start_control_plane,
                                {"SLUICE_METRICS_LISTEN": f"127.0.0.1:{ports['control-plane']}"})
        platform.start_worker({"SLUICE_METRICS_LISTEN": f"127.0.0.1:{ports['worker']}"})
        platform.start_recovery({"SLUICE_METRICS_LISTEN": f"127.0.0.1:{ports['recovery']}"})
        yield platform, ports
    finally:
        await asyncio.to_thread(platform.stop)


async def test_each_service_counts_what_it_did(
        stack: tuple[Platform, dict[str, int]]) -> None:
    platform, ports = stack
    key = await asyncio.to_thread(platform.create_tenant, "metrics")
    await asyncio.to_thread(wait_for_languages, platform, key)
    async with SluiceClient(platform.api_target, key) as client:
        ok = await client.submit(python_job("print('counted')"))
        failing = await client.submit(python_job("raise SystemExit(3)"))
        assert (await client.result(ok.id)).verdict == pb.VERDICT_OK
        assert (await client.result(failing.id)).verdict == pb.VERDICT_RUNTIME_ERROR

        # Refusals are timed too, by their code.
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await client.get("0" * 28)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    async with SluiceClient(platform.api_target, "sk_nobody") as stranger:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stranger.languages()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    control = await asyncio.to_thread(scrape, ports["control-plane"])
    rpc = "sluice_rpc_seconds_count"
    assert value(control, rpc, method="ExecutionService/SubmitJob", code="OK") == 2
    assert value(control, rpc, method="ExecutionService/GetJob", code="NOT_FOUND") == 1
    assert value(control, rpc, method="ExecutionService/ListLanguages",
                 code="UNAUTHENTICATED") == 1
    # Streams when they end (the watches of the two results); the gateway's calls too.
    assert value(control, rpc, method="ExecutionService/WatchJob", code="OK") == 2
    assert value(control, rpc, method="WorkerGateway/RegisterWorker", code="OK") >= 1
    assert value(control, "sluice_jobs_submitted_total") == 2
    assert value(control, "sluice_jobs_finished_total", state="JOB_STATE_SUCCEEDED") == 1
    assert value(control, "sluice_jobs_finished_total", state="JOB_STATE_FAILED") == 1
    assert value(control, "sluice_job_wait_seconds_count") == 2
    assert value(control, "sluice_job_run_seconds_count", state="JOB_STATE_SUCCEEDED") == 1
    assert value(control, "sluice_job_run_seconds_count", state="JOB_STATE_FAILED") == 1
    assert value(control, "sluice_job_run_seconds_sum", state="JOB_STATE_SUCCEEDED") > 0

    worker = await asyncio.to_thread(scrape, ports["worker"])
    assert value(worker, "sluice_worker_slots") == 2
    assert value(worker, "sluice_worker_running_jobs") == 0
    assert value(worker, "sluice_worker_runs_total", language="python", verdict="OK") == 1
    assert value(worker, "sluice_worker_runs_total", language="python",
                 verdict="RUNTIME_ERROR") == 1
    assert value(worker, "sluice_worker_run_seconds_count", language="python") == 2
    assert value(worker, "sluice_worker_run_cpu_seconds_total", language="python") > 0
    assert value(worker, "sluice_worker_claim_wait_seconds_count") == 2
    assert value(worker, "sluice_worker_deliveries_returned_total") == 0

    # The recovery service sweeps every half second; its first sweep shows up soon.
    deadline = time.monotonic() + 30
    while (swept := value(await asyncio.to_thread(scrape, ports["recovery"]),
                          "sluice_recovery_sweeps_total", outcome="ok")) < 1:
        assert time.monotonic() < deadline, "no recovery sweep counted within 30 s"
        await asyncio.sleep(0.5)
    recovery = await asyncio.to_thread(scrape, ports["recovery"])
    assert swept >= 1
    assert value(recovery, "sluice_recovery_dead_letter_depth") == 0
    assert value(recovery, "sluice_recovery_last_sweep_timestamp_seconds") > time.time() - 60
