"""The operator commands against the real platform, run from a directory with no store in
it and SLUICE_STORE_URL pointing at a file that never comes to be: they reach the platform
over gRPC only. A wrong key, a tenant's key, no key and an unreachable API each get one
line naming the setting to fix, and a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job
from tests.support.platform import Platform, free_port


class Operator:
    """`sluice ...` as an operator on another machine: an empty directory, no store."""

    def __init__(self, platform: Platform, elsewhere: Path) -> None:
        self.platform = platform
        self.elsewhere = elsewhere
        self.absent_store = elsewhere / "no-store-here.db"

    async def run(self, *args: str, env: dict[str, str] | None = None,
                  admin: bool = True) -> subprocess.CompletedProcess[str]:
        result = await asyncio.to_thread(
            self.platform.cli, *args, admin=admin, cwd=self.elsewhere,
            env={"SLUICE_STORE_URL": f"sqlite:///{self.absent_store}", **(env or {})})
        assert not self.absent_store.exists(), "an operator command opened a store"
        assert not (self.elsewhere / ".sluice").exists()
        return result

    async def ok(self, *args: str) -> list[str]:
        result = await self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()


@pytest.fixture
def operator(platform: Platform, tmp_path: Path) -> Operator:
    return Operator(platform, tmp_path)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


async def test_tenants_keys_quotas_and_audit_over_grpc(operator: Operator,
                                                       platform: Platform) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = await operator.ok("tenant", "create", name)
    key = created[-1]
    assert key.startswith("sk_") and name in created[0]
    tenants = dict(line.split("\t")[::-1] for line in await operator.ok("tenant", "list"))
    tenant_id = tenants[name]

    async with SluiceClient(platform.api_target, key) as client:
        # The printed key is live, and the new tenant's: it has no jobs yet.
        listing = await client.stub.ListJobs(api.ListJobsRequest(), metadata=client.metadata)
        assert list(listing.jobs) == []

    second = (await operator.ok("key", "create", name))[-1]
    keys = [line.split("\t") for line in await operator.ok("key", "list", name)]
    assert len(keys) == 2 and {row[2] for row in keys} == {"user"}
    assert {row[3] for row in keys} == {"active"}
    second_id = next(row[0] for row in keys if second.startswith(row[1].rstrip("…")))
    assert (await operator.ok("key", "revoke", second_id)) == [f"API key {second_id} revoked"]
    states = {row.split("\t")[0]: row.split("\t")[3]
              for row in await operator.ok("key", "list", tenant_id)}
    assert states[second_id] == "revoked"

    shown = await operator.ok("quota", "set", name, "--max-running", "3")
    assert shown[0] == f"tenant {tenant_id}"
    assert any(line.split()[:3] == ["max_running_jobs", "3", "(set)"] for line in shown)
    shown = await operator.ok("quota", "get", name)
    assert any(line.split()[:3] == ["max_running_jobs", "3", "(set)"] for line in shown)
    assert any(line.split()[:2] == ["max_queued_jobs", "10000"] for line in shown)
    assert shown[-1].strip().startswith("in use: 0 queued, 0 running")

    rows = [line.split("\t") for line in await operator.ok("audit", "--tenant", name)]
    assert [row[4] for row in rows] == ["key_created", "key_created", "key_revoked",
                                        "quota_changed"]
    assert json.loads(rows[3][6])["changed"] == {"max_running_jobs": 3}
    later = await operator.ok("audit", "--tenant", name, "--after", rows[1][0])
    assert [line.split("\t")[4] for line in later] == ["key_revoked", "quota_changed"]


async def test_jobs_of_any_tenant(operator: Operator, client: SluiceClient) -> None:
    job = await client.submit(python_job(
        "import sys\nfor i in range(3): print('line', i, flush=True)\n"
        "print('to stderr', file=sys.stderr)\nraise SystemExit(4)"))
    watched = await operator.run("jobs", "watch", job.id)
    assert watched.returncode == 4, watched.stderr
    assert watched.stdout == "line 0\nline 1\nline 2\n"
    assert "to stderr" in watched.stderr and "VERDICT_RUNTIME_ERROR" in watched.stderr

    fields = dict(line.split(":", 1) for line in await operator.ok("jobs", "get", job.id))
    assert fields["id"].strip() == job.id and fields["state"].strip() == "FAILED"
    assert fields["verdict"].strip() == "VERDICT_RUNTIME_ERROR"
    as_json = json.loads("\n".join(await operator.ok("jobs", "get", job.id, "--json")))
    assert as_json["result"]["exitCode"] == 4

    sleeper = await client.submit(python_job("import time\ntime.sleep(60)"))
    cancelled = await operator.ok("jobs", "cancel", sleeper.id)
    assert cancelled[0].startswith(f"job {sleeper.id} ")
    assert (await client.wait(sleeper.id)).state == pb.JOB_STATE_CANCELLED

    # The tenant's jobs, newest first; by state too. The tenant is the one of the job.
    tenant = (await operator.ok("audit", "--job", job.id))[0].split("\t")[2]
    listed = [line.split("\t") for line in await operator.ok("jobs", "list", tenant)]
    ids = [row[0] for row in listed]
    assert ids.index(sleeper.id) < ids.index(job.id)
    failed = [line.split("\t")[0]
              for line in await operator.ok("jobs", "list", tenant, "--state", "failed")]
    assert job.id in failed and sleeper.id not in failed

    missing = await operator.run("jobs", "get", "0" * 28)
    assert missing.returncode == 1
    assert one_line(missing.stderr).startswith("sluice: NOT_FOUND:")


async def test_dead_letters_over_grpc(operator: Operator) -> None:
    listing = await operator.run("dead-letters", "list", "--parked")
    assert listing.returncode == 0, listing.stderr
    assert "dead-letter queue" in listing.stderr
    refused = await operator.run("dead-letters", "replay", "0" * 28)
    assert refused.returncode == 1
    assert one_line(refused.stderr).startswith("sluice: NOT_FOUND:")
    assert (await operator.run("dead-letters", "replay")).returncode == 2
    purged = await operator.ok("dead-letters", "purge")
    assert purged[-1].endswith("parked message(s) purged")


OPERATOR_COMMANDS = [("tenant", "list"), ("tenant", "create", "never-made"),
                     ("key", "list", "anyone"), ("key", "revoke", "k_nothing"),
                     ("quota", "get", "anyone"), ("audit",), ("jobs", "list", "anyone"),
                     ("jobs", "get", "0" * 28), ("jobs", "watch", "0" * 28),
                     ("jobs", "cancel", "0" * 28), ("dead-letters", "list"),
                     ("dead-letters", "purge"), ("tenant", "pause", "anyone"),
                     ("tenant", "resume", "anyone"), ("workers", "list"),
                     ("workers", "drain", "nobody"), ("workers", "slots", "nobody", "1"),
                     ("queues",)]


@pytest.mark.parametrize("command", OPERATOR_COMMANDS, ids=" ".join)
async def test_every_command_says_what_is_wrong_with_its_key(
        operator: Operator, tenant_key: str, command: tuple[str, ...]) -> None:
    wrong = await operator.run(*command, env={"SLUICE_ADMIN_KEY": "sk_not-a-key"})
    assert wrong.returncode == 1
    assert "SLUICE_ADMIN_KEY" in one_line(wrong.stderr) and "refused" in wrong.stderr

    tenants = await operator.run(*command, env={"SLUICE_ADMIN_KEY": tenant_key})
    assert tenants.returncode == 1
    assert "not an admin key" in one_line(tenants.stderr)

    none = await operator.run(*command, admin=False)
    assert none.returncode == 2
    assert "SLUICE_ADMIN_KEY" in one_line(none.stderr)

    nowhere = await operator.run(*command,
                                 env={"SLUICE_API_TARGET": f"127.0.0.1:{free_port()}"})
    assert nowhere.returncode == 1
    assert "SLUICE_API_TARGET" in one_line(nowhere.stderr)


async def test_the_admin_key_file_where_sluice_up_keeps_it(operator: Operator,
                                                           platform: Platform) -> None:
    key_file = operator.elsewhere / "keys" / ".sluice" / "admin.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text(platform.admin_key + "\n")
    result = await asyncio.to_thread(
        platform.cli, "tenant", "list", admin=False, cwd=key_file.parent.parent,
        env={"SLUICE_STORE_URL": f"sqlite:///{operator.absent_store}"})
    assert result.returncode == 0, result.stderr
    assert any(line.endswith("\toperators") for line in result.stdout.splitlines())


async def test_bootstrap_makes_the_first_admin_key_once(platform: Platform) -> None:
    again = await asyncio.to_thread(platform.cli, "admin", "bootstrap", admin=False)
    assert again.returncode == 1
    assert "exists already" in one_line(again.stderr) and "--another" in again.stderr
    another = await asyncio.to_thread(platform.cli, "admin", "bootstrap", "--another",
                                      admin=False)
    assert another.returncode == 0, another.stderr
    key = another.stdout.strip().splitlines()[-1]
    assert key.startswith("sk_") and key != platform.admin_key
    listed = await asyncio.to_thread(platform.cli, "tenant", "list",
                                     env={"SLUICE_ADMIN_KEY": key})
    assert listed.returncode == 0, listed.stderr
