"""Every metric that an alert rule (deploy/prometheus/) or a dashboard panel
(deploy/grafana/) names is served by a running platform's /metrics, or is one of the
external metrics deploy/checks/metric_names.py lists with its source. A renamed or removed
metric fails here, not silently in an alert that can no longer fire."""

from __future__ import annotations

import asyncio
import importlib.util
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.broker import RunVhost
from tests.support.platform import REPO, Platform, free_port

# Sample names prometheus_client derives from a family, by its type.
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "untyped": ("",),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created")}


def load_checker() -> ModuleType:
    path = REPO / "deploy" / "checks" / "metric_names.py"
    spec = importlib.util.spec_from_file_location("deploy_metric_names", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def served_names(port: int, timeout_s: float = 30) -> set[str]:
    """Every sample name the endpoint declares, with or without samples yet: a labelled
    metric nothing has incremented still has its HELP and TYPE lines."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=5) as response:
                text = response.read().decode()
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, f"no /metrics on :{port} within {timeout_s} s"
            time.sleep(0.2)
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture
async def served(vhost: RunVhost, tmp_path: Path) -> AsyncIterator[set[str]]:
    ports = {"control-plane": free_port(), "worker": free_port(), "recovery": free_port(),
             "console": free_port()}
    platform = Platform(tmp_path, vhost.amqp_url(), prefix=f"{tmp_path.name}-deploy")
    worker = ""
    try:
        await asyncio.to_thread(platform.start_control_plane,
                                {"SLUICE_METRICS_LISTEN": f"127.0.0.1:{ports['control-plane']}"})
        worker = platform.start_worker(
            {"SLUICE_METRICS_LISTEN": f"127.0.0.1:{ports['worker']}"})
        platform.start_recovery({"SLUICE_METRICS_LISTEN": f"127.0.0.1:{ports['recovery']}"})
        await asyncio.to_thread(platform.start_console,
                                {"SLUICE_METRICS_LISTEN": f"127.0.0.1:{ports['console']}"})
        names: set[str] = set()
        for port in ports.values():
            names |= await asyncio.to_thread(served_names, port)
        yield names
    finally:
        # Only its /metrics was wanted: a worker still probing its languages would finish
        # that before it heeds SIGTERM, which is minutes of teardown on a busy machine.
        if worker:
            platform.kill(worker)
        await asyncio.to_thread(platform.stop)


async def test_rules_and_dashboard_name_only_served_metrics(served: set[str]) -> None:
    checker = load_checker()
    named: dict[str, str] = {}
    for where, expr in checker.rule_exprs(REPO / "deploy/prometheus/sluice.rules.yaml"):
        named.update(dict.fromkeys(checker.metric_names(expr), f"rule {where}"))
    for where, expr in checker.dashboard_exprs(REPO / "deploy/grafana/sluice.json"):
        named.update(dict.fromkeys(checker.metric_names(expr), f"panel {where!r}"))
    assert len(named) > 20  # the rules and panels were read, not skipped
    missing = {name: where for name, where in named.items()
               if name not in served and name not in checker.EXTERNAL}
    assert not missing, f"named but not served by any service's /metrics: {missing}"
    # The code-side check (deploy/check.sh) and the running services agree.
    assert set(checker.exported_names()) <= served
