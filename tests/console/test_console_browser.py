"""The web console in a real browser (Debian's chromium, headless, driven by playwright)
against the real platform: sign in; a job submitted from the CLI appears and its output
streams live; a job printing <script> stays text; a dead letter is opened and replayed; a
paused tenant's jobs wait until it is resumed; the operator's pages show workers and
queues. The key never shows in a URL or the console's log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

from playwright.async_api import Page, expect

from sluice.client import SluiceClient
from sluice.topology import Topology
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job
from tests.console.conftest import Console, screenshot, sign_in

TICKS = "import time\nfor i in range({n}):\n    print('tick', i, flush=True)\n    time.sleep({s})\n"
HOSTILE = ("<script>document.title='pwned'</script>"
           "<img src=x onerror=\"document.title='pwned'\"><b>bold?</b>")


async def new_tenant(console: Console, prefix: str) -> tuple[str, str, str]:
    """(id, name, key) of a new tenant."""
    reply = await console.admin.stub.CreateTenant(
        adm.CreateTenantRequest(name=f"{prefix}-{uuid.uuid4().hex[:6]}"),
        metadata=console.admin.metadata)
    return reply.tenant.id, reply.tenant.name, reply.secret


def cli_run(console: Console, key: str, source: str, tmp_path: Path) -> subprocess.Popen[str]:
    """`sluice run FILE` as a person would, in the background: it streams the output."""
    program = tmp_path / f"job-{uuid.uuid4().hex[:6]}.py"
    program.write_text(source)
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "run", str(program)],
        env={**console.platform.env, "SLUICE_API_KEY": key,
             "SLUICE_API_TARGET": console.platform.api_target},
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def appears(page: Page, console: Console, key: str) -> str:
    """The id of the tenant's newest job (what the CLI just submitted), once its row is in
    the console's list of jobs."""
    async with SluiceClient(console.platform.api_target, key) as client:
        async with asyncio.timeout(30):
            while not (listed := await client.stub.ListJobs(
                    api.ListJobsRequest(page_size=1), metadata=client.metadata)).jobs:
                await asyncio.sleep(0.1)
    job_id = listed.jobs[0].id
    await expect(page.locator(f"#jobs tr[data-job='{job_id}']")).to_be_visible(timeout=20_000)
    return job_id


async def test_sign_in_refuses_a_bad_key_and_sets_the_headers(page: Page,
                                                              console: Console) -> None:
    response = await page.goto(f"{console.url}/signin")
    assert response is not None
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    await page.fill("#key", "sk_not-a-key")
    await page.click("button[type=submit]")
    await expect(page.locator("#error")).to_have_text("The API refused that key: it is "
                                                      "unknown or revoked.")
    assert "sk_" not in page.url
    # The API is not reachable around the session.
    api = await page.request.get(f"{console.url}/api/jobs")
    assert api.status == 401


async def test_a_tenant_sees_its_job_appear_and_stream_live(page: Page, console: Console,
                                                            tmp_path: Path) -> None:
    _, _, key = await new_tenant(console, "watcher")
    await sign_in(page, console, key)
    await expect(page.locator("#who")).to_contain_text("tenant key")
    await expect(page.locator("a[data-page=tenants]")).to_be_hidden()
    submitted = cli_run(console, key, TICKS.format(n=16, s=0.4), tmp_path)
    try:
        job_id = await appears(page, console, key)
        await screenshot(page, "jobs")
        await page.click(f"#jobs tr[data-job='{job_id}'] a")
        output = page.locator("#job-output")
        # Live: the first ticks show while the job still runs.
        await expect(output).to_contain_text("tick 1", timeout=30_000)
        await expect(page.locator("#job-summary .state")).to_have_text("RUNNING")
        await screenshot(page, "job")
        await expect(page.locator("#stream-status")).to_have_text("ended", timeout=30_000)
        expected = "".join(f"tick {i}\n" for i in range(16))
        assert await output.text_content() == expected  # each chunk once, in order
        await expect(page.locator("#job-summary .state")).to_have_text("SUCCEEDED")
        await expect(page.locator("#job-verdict")).to_contain_text("OK")
        await expect(page.locator("#job-history li")).to_have_count(3)  # queued, running, done
        await expect(page.locator("pre.file")).to_contain_text("print('tick', i, flush=True)")
        stdout, _ = await asyncio.to_thread(submitted.communicate, timeout=60)
        assert stdout == expected
    finally:
        if submitted.poll() is None:
            submitted.kill()
    # The key went to the console once, in a POST body: in no URL, no log line.
    assert key not in console.log.read_text()
    assert all(key not in cookie["value"] for cookie in await page.context.cookies())
    session = next(c for c in await page.context.cookies() if c["name"] == "sluice_console")
    assert session["httpOnly"] and session["sameSite"] == "Strict"


async def test_output_that_is_markup_stays_text(page: Page, console: Console) -> None:
    _, _, key = await new_tenant(console, "hostile")
    async with SluiceClient(console.platform.api_target, key) as client:
        job = await client.submit(python_job(f"print({HOSTILE!r})",
                                             labels={"note": "<i>label</i>"}))
        await client.result(job.id)
    await sign_in(page, console, key)
    title = await page.title()
    await page.goto(f"{console.url}/#/jobs/{job.id}")
    output = page.locator("#job-output")
    await expect(output).to_have_text(HOSTILE + "\n", timeout=30_000)
    assert await page.locator("#job-output script, #job-output img, #job-output b").count() == 0
    await expect(page.locator("#job-summary")).to_contain_text("note=<i>label</i>")
    assert await page.locator("#job-summary i").count() == 0
    await page.goto(f"{console.url}/#/jobs")
    await expect(page.locator("#jobs")).to_contain_text("note=<i>label</i>")
    assert await page.title() == title != "pwned"


async def test_an_operator_replays_a_dead_letter(page: Page, console: Console) -> None:
    _, _, key = await new_tenant(console, "unlucky")
    async with SluiceClient(console.platform.api_target, key) as client:
        job = await client.submit(python_job(
            "import time\nprint('started', flush=True)\ntime.sleep(3)\nprint('done')"))
        async with asyncio.timeout(60):
            while (await client.get(job.id)).state != pb.JOB_STATE_RUNNING:
                await asyncio.sleep(0.1)
        await asyncio.to_thread(console.replace_worker)
        async with asyncio.timeout(60):
            while (await client.get(job.id)).state != pb.JOB_STATE_DEAD_LETTERED:
                await asyncio.sleep(0.2)

        await sign_in(page, console, console.platform.admin_key)
        await page.click("a[data-page=dead-letters]")
        row = page.locator(f"#dead-letters tr[data-job='{job.id}']")
        await expect(row).to_contain_text("no attempts remain")
        await screenshot(page, "dead-letters")
        await row.locator(f"a[href='#/jobs/{job.id}']").click()
        await expect(page.locator("#job-summary .state")).to_have_text("DEAD_LETTERED")
        await expect(page.locator("#job-summary")).to_contain_text("no attempts remain")
        await page.go_back()
        await page.locator(f"#dead-letters tr[data-job='{job.id}'] button.replay").click()
        await expect(page.locator("#notice")).to_have_text(f"job {job.id} replayed")
        # Its watch would replay the dead-lettered past until the replay's claim: poll.
        async with asyncio.timeout(60):
            while (done := await client.get(job.id)).state != pb.JOB_STATE_SUCCEEDED:
                await asyncio.sleep(0.2)
        assert done.result.stdout == b"started\ndone\n"
        await expect(page.locator(f"#dead-letters tr[data-job='{job.id}']")).to_have_count(0)
    replays = [e for e in await console.admin.audit(job_id=job.id) if e.action == "replayed"]
    assert len(replays) == 1 and replays[0].actor.startswith("key:")


async def test_an_operator_pauses_a_tenant_and_its_jobs_wait(page: Page, console: Console,
                                                             tmp_path: Path) -> None:
    tenant_id, name, key = await new_tenant(console, "flood")
    await sign_in(page, console, console.platform.admin_key)
    await page.click("a[data-page=tenants]")
    row = page.locator(f"#tenants tr[data-tenant='{name}']")
    await row.locator("button.pause").click()
    await expect(row).to_contain_text("paused since")
    await screenshot(page, "tenants")

    submitted = cli_run(console, key, "print('let through')\n", tmp_path)
    try:
        await page.click("a[data-page=jobs]")
        await page.select_option("#filter-tenant", name)
        job_id = await appears(page, console, key)
        await page.click(f"#jobs tr[data-job='{job_id}'] a")
        summary = page.locator("#job-summary")
        await expect(summary).to_contain_text("paused by an operator", timeout=30_000)
        await asyncio.sleep(1.5)
        await expect(summary.locator(".state")).to_have_text("QUEUED")
        assert submitted.poll() is None  # the CLI still waits for it

        await page.click("a[data-page=tenants]")
        await page.locator(f"#tenants tr[data-tenant='{name}'] button.resume").click()
        await expect(page.locator(f"#tenants tr[data-tenant='{name}']")).to_contain_text(
            "active")
        stdout, _ = await asyncio.to_thread(submitted.communicate, timeout=60)
        assert stdout == "let through\n"
    finally:
        if submitted.poll() is None:
            submitted.kill()
    actions = [e.action for e in await console.admin.audit(tenant_id=tenant_id)]
    assert actions.count("tenant_paused") == 1 and actions.count("tenant_resumed") == 1


async def test_workers_queues_and_the_audit_trail(page: Page, console: Console) -> None:
    await sign_in(page, console, console.platform.admin_key)
    await page.click("a[data-page=workers]")
    worker = console.workers[-1]
    row = page.locator(f"#workers tr[data-worker='{worker}']")
    await expect(row).to_contain_text("python")
    await expect(row).to_contain_text("4 / 4")
    await expect(page.locator("#queues tr[data-queue$='.work.0']")).to_be_visible()
    await expect(page.locator("#queues")).to_contain_text("dead_letter")
    await screenshot(page, "workers")

    await page.fill("#slots-worker", worker)
    await page.fill("#slots-count", "2")
    await page.click("#slots-count ~ button, form.filters button[type=submit]")
    await expect(row).to_contain_text("2 / 4", timeout=15_000)
    await row.locator("button.drain").click()
    await expect(row).to_contain_text("draining")
    await expect(row).to_contain_text("0 / 4", timeout=15_000)
    await row.locator("button.undrain").click()
    await expect(row).to_contain_text("2 / 4", timeout=15_000)
    await page.fill("#slots-worker", worker)
    await page.fill("#slots-count", "")
    await page.click("form.filters button[type=submit]")
    await expect(row).to_contain_text("4 / 4", timeout=15_000)

    await page.click("a[data-page=audit]")
    await page.fill("input[name=action]", "worker_drained")
    await page.click("form.filters button[type=submit]")
    await expect(page.locator("#audit tbody tr")).to_have_count(1)
    await expect(page.locator("#audit")).to_contain_text(worker)


async def test_events_resume_after_a_dropped_connection(console: Console) -> None:
    """The SSE endpoint itself: read part of a job's events, drop the connection, come back
    with Last-Event-ID, and every event arrives once."""
    import aiohttp

    _, _, key = await new_tenant(console, "resume")
    async with SluiceClient(console.platform.api_target, key) as client:
        job = await client.submit(python_job(TICKS.format(n=8, s=0.2)))
        await client.result(job.id)
    # unsafe: the jar keeps cookies of an IP address (127.0.0.1) too.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        signed = await http.post(f"{console.url}/signin", data={"key": key})
        assert signed.status == 200 and str(signed.url).endswith("/")
        url = f"{console.url}/api/jobs/{job.id}/events"
        seen: list[int] = []
        output = []
        async with http.get(url) as first:
            async for event in _sse(first):
                seen.append(int(event["id"]))
                if event["event"] == "output":
                    output.append(json.loads(event["data"])["output"]["data"])
                if len(seen) == 4:
                    break  # the connection drops here
        async with http.get(url, headers={"Last-Event-ID": str(seen[-1])}) as second:
            async for event in _sse(second):
                if event["event"] == "end":
                    break
                seen.append(int(event["id"]))
                if event["event"] == "output":
                    output.append(json.loads(event["data"])["output"]["data"])
    assert seen == list(range(1, len(seen) + 1))
    assert "".join(output) == "".join(f"tick {i}\n" for i in range(8))


async def _sse(response: object):  # type: ignore[no-untyped-def]
    event: dict[str, str] = {}
    async for raw in response.content:  # type: ignore[attr-defined]
        line = raw.decode().rstrip("\n")
        if not line:
            if "data" in event:
                event.setdefault("event", "message")
                yield event
            event = {}
            continue
        field, _, value = line.partition(": ")
        event[field] = value


async def test_posts_need_the_csrf_token_and_this_origin(console: Console) -> None:
    """A signed-in browser's cookie alone changes nothing: a POST needs the session's CSRF
    token in its header (a form on another site cannot set one) and this origin."""
    import aiohttp

    tenant_id, _, _ = await new_tenant(console, "guarded")
    pause = f"{console.url}/api/tenants/{tenant_id}/pause"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await http.post(f"{console.url}/signin", data={"key": console.platform.admin_key})
        async with http.get(f"{console.url}/api/session") as reply:
            csrf = (await reply.json())["csrf"]
        async with http.post(pause) as no_token:
            assert no_token.status == 403
        async with http.post(pause, headers={"X-CSRF-Token": "forged"}) as wrong:
            assert wrong.status == 403
        async with http.post(pause, headers={"X-CSRF-Token": csrf,
                                             "Origin": "http://evil.example"}) as foreign:
            assert foreign.status == 403
        tenants = await console.admin.stub.ListTenants(adm.ListTenantsRequest(),
                                                       metadata=console.admin.metadata)
        assert not next(t for t in tenants.tenants if t.id == tenant_id).paused
        async with http.post(pause, headers={"X-CSRF-Token": csrf}) as allowed:
            assert allowed.status == 200 and (await allowed.json())["tenant"]["paused"]
        async with http.post(f"{console.url}/api/tenants/{tenant_id}/resume",
                             headers={"X-CSRF-Token": csrf}) as resumed:
            assert resumed.status == 200
        # A tenant's key opens no operator page.
        _, _, key = await new_tenant(console, "plain")
        await http.post(f"{console.url}/signin", data={"key": key})
        async with http.get(f"{console.url}/api/tenants") as refused:
            assert refused.status == 403


async def test_an_operator_stops_a_flood_from_the_console(page: Page, console: Console,
                                                          tmp_path: Path) -> None:
    """The issue's own scene: a tenant floods; the operator sees it in the console, pauses
    that tenant, and watches another tenant's job stream live; resumed, the flood drains."""
    flood_id, flood, flood_key = await new_tenant(console, "flood")
    _, calm, calm_key = await new_tenant(console, "calm")
    async with SluiceClient(console.platform.api_target, flood_key) as client:
        flooded = [await client.submit(python_job("import time\ntime.sleep(3)"))
                   for _ in range(40)]
    await sign_in(page, console, console.platform.admin_key)

    # The flood shows: the tenant's queued jobs, and its shard's queue in the broker.
    await page.select_option("#filter-tenant", flood)
    await page.select_option("#filter-state", "queued")
    await page.click("form.filters button[type=submit]")
    await expect(page.locator("#jobs tbody tr[data-job]")).to_have_count(20, timeout=20_000)
    await page.click("a[data-page=workers]")
    shard = Topology("any").shard_of(flood_id)
    ready = page.locator(f"#queues tr[data-queue$='.work.{shard}'] td.num").first
    await expect(ready).not_to_have_text("0", timeout=20_000)  # the broker's 5 s statistics
    await screenshot(page, "workers")

    await page.click("a[data-page=tenants]")
    await page.locator(f"#tenants tr[data-tenant='{flood}'] button.pause").click()
    await expect(page.locator(f"#tenants tr[data-tenant='{flood}']")).to_contain_text("paused")

    submitted = cli_run(console, calm_key, TICKS.format(n=12, s=0.4), tmp_path)
    try:
        await page.click("a[data-page=jobs]")
        await page.select_option("#filter-state", "")
        await page.select_option("#filter-tenant", calm)
        job_id = await appears(page, console, calm_key)
        await page.click(f"#jobs tr[data-job='{job_id}'] a")
        await expect(page.locator("#job-output")).to_contain_text("tick 2", timeout=30_000)
        await expect(page.locator("#job-summary .state")).to_have_text("RUNNING")
        await expect(page.locator("#stream-status")).to_have_text("ended", timeout=30_000)
        assert await page.locator("#job-output").text_content() == "".join(
            f"tick {i}\n" for i in range(12))
        await asyncio.to_thread(submitted.communicate, timeout=60)
    finally:
        if submitted.poll() is None:
            submitted.kill()
    tenants = await console.admin.stub.ListTenants(adm.ListTenantsRequest(),
                                                   metadata=console.admin.metadata)
    paused_at = next(t for t in tenants.tenants if t.id == flood_id).pause_time.ToNanoseconds()
    async with SluiceClient(console.platform.api_target, flood_key) as client:
        waiting = [await client.get(job.id) for job in flooded]
        # None of the flood started after the pause (those running then finished), and the
        # rest wait, saying why.
        assert not [job.id for job in waiting if job.HasField("start_time")
                    and job.start_time.ToNanoseconds() > paused_at]
        held = [job for job in waiting if job.state == pb.JOB_STATE_QUEUED]
        assert held and all("paused by an operator" in job.state_reason
                            for job in held if job.state_reason)

        await page.click("a[data-page=tenants]")
        await page.locator(f"#tenants tr[data-tenant='{flood}'] button.resume").click()
        await expect(page.locator(f"#tenants tr[data-tenant='{flood}']")).to_contain_text(
            "active")
        async with asyncio.timeout(120):
            for job in flooded:
                await client.wait(job.id)


async def test_job_filters_and_paging(page: Page, console: Console) -> None:
    """The jobs page's filters (state, label, time) and its pages, newest first."""
    _, _, key = await new_tenant(console, "filters")
    async with SluiceClient(console.platform.api_target, key) as client:
        jobs = [await client.submit(python_job(f"print({i})", labels={"batch": str(i % 2)}))
                for i in range(5)]
        for job in jobs:
            await client.wait(job.id)
    await sign_in(page, console, key)
    rows = page.locator("#jobs tbody tr[data-job]")
    await expect(rows).to_have_count(5)
    # Newest first.
    assert [await row.get_attribute("data-job") for row in await rows.all()] == [
        job.id for job in reversed(jobs)]

    await page.fill("#filter-label", "batch=1")
    await page.click("form.filters button[type=submit]")
    await expect(rows).to_have_count(2)
    assert {await row.get_attribute("data-job") for row in await rows.all()} == {
        jobs[1].id, jobs[3].id}
    await page.select_option("#filter-state", "failed")
    await page.click("form.filters button[type=submit]")
    await expect(page.locator("#jobs")).to_contain_text("nothing here")
    await page.select_option("#filter-state", "succeeded")
    await page.fill("#filter-label", "")
    await page.fill("#filter-after", "2999-01-01T00:00")
    await page.click("form.filters button[type=submit]")
    await expect(page.locator("#jobs")).to_contain_text("nothing here")
    await page.fill("#filter-after", "")
    await page.fill("#filter-label", "nonsense")
    await page.click("form.filters button[type=submit]")
    await expect(page.locator("#jobs .error")).to_contain_text("label: 'nonsense' is not "
                                                               "KEY=VALUE")

    # Pages of two: three pages, older ones after.
    page_two = await page.request.get(f"{console.url}/api/jobs?page_size=2")
    first = await page_two.json()
    assert [job["id"] for job in first["jobs"]] == [jobs[4].id, jobs[3].id]
    second = await (await page.request.get(
        f"{console.url}/api/jobs?page_size=2&page_token={first['next_page_token']}")).json()
    assert [job["id"] for job in second["jobs"]] == [jobs[2].id, jobs[1].id]
