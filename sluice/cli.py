"""The `sluice` command: run the services, manage tenants, keys, quotas and jobs, run a file.

The planes are imported only by the subcommand that runs them, so the kernel stays the
kernel: `sluice worker` never loads the control plane, and the other way round.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict, MessageToJson
from google.protobuf.timestamp_pb2 import Timestamp

from sluice.admin_bootstrap import OPERATOR_TENANT
from sluice.admin_client import OperatorClient, OperatorError, admin_key, explain
from sluice.settings import get_settings
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import job_pb2 as pb


def _run_service(module: str) -> int:
    importlib.import_module(module).main()
    return 0


# Operator commands: AdminService over gRPC, with an admin key ---------------------------


def _operator(action: Callable[[OperatorClient], Awaitable[int]]) -> int:
    """Runs an operator command against the API; a refusal or an unreachable API is one
    line on stderr and a non-zero exit."""
    settings = get_settings()
    try:
        key = admin_key(settings)
    except OperatorError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2

    async def call() -> int:
        async with OperatorClient(settings.api_address, key, settings) as client:
            return await action(client)

    try:
        return asyncio.run(call())
    except grpc.aio.AioRpcError as exc:
        print(f"sluice: {explain(exc, settings.api_address)}", file=sys.stderr)
        return 1


def _when(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds")


def cmd_tenant_create(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        reply = await client.create_tenant(args.name, admin=args.admin)
        print(f"tenant {reply.tenant.name} created (id {reply.tenant.id}); API key "
              f"{reply.api_key.id}{' (admin)' if reply.api_key.admin else ''}, shown once:")
        print(reply.secret)
        return 0

    return _operator(action)


def cmd_tenant_list(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        for tenant in await client.list_tenants():
            paused = f"\tpaused since {_when(tenant.pause_time)}" if tenant.paused else ""
            print(f"{tenant.id}\t{tenant.name}{paused}")
        return 0

    return _operator(action)


def cmd_tenant_pause(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        if args.action == "pause":
            tenant = await client.pause_tenant(args.tenant)
            print(f"tenant {tenant.name} paused: its jobs wait QUEUED (running ones finish);"
                  f" `sluice tenant resume {tenant.name}` lets them start")
        else:
            tenant = await client.resume_tenant(args.tenant)
            print(f"tenant {tenant.name} resumed: its waiting jobs start within its quota")
        return 0

    return _operator(action)


# Workers and queues ----------------------------------------------------------------------


def _print_worker(worker: adm.Worker) -> None:
    controls = "draining" if worker.draining else f"slots {worker.desired_slots}"
    applied = "" if worker.applied else " (not yet applied)"
    print(f"{worker.worker_id}\t{worker.identity}\t{','.join(worker.languages)}"
          f"\t{worker.active_slots}/{worker.slots} slots\t{worker.running_jobs} running"
          f"\t{controls}{applied}\tlast heartbeat {_when(worker.last_heartbeat)}")


def cmd_workers(args: argparse.Namespace) -> int:
    """list; drain, undrain and slots WORKER_ID (from list)."""

    async def action(client: OperatorClient) -> int:
        if args.action == "list":
            reply = await client.list_workers()
            for worker in reply.workers:
                _print_worker(worker)
            print(f"sluice: {len(reply.workers)} worker(s); a control acts within "
                  f"{reply.report_interval_ms} ms (their report interval)", file=sys.stderr)
            return 0
        if args.action == "drain":
            worker = await client.drain_worker(args.worker_id)
        elif args.action == "undrain":
            worker = await client.resume_worker(args.worker_id)
        else:
            worker = await client.set_worker_slots(args.worker_id,
                                                   None if args.reset else args.slots)
        _print_worker(worker)
        return 0

    if args.action == "slots" and (args.slots is None) == (not args.reset):
        print("sluice: give the number of slots, or --reset", file=sys.stderr)
        return 2
    return _operator(action)


def cmd_queues(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        print("queue\tkind\tready\tunacked\tconsumers")
        for queue in await client.queue_depths():
            print(f"{queue.name}\t{queue.kind}\t{queue.ready}\t{queue.unacked}"
                  f"\t{queue.consumers}")
        return 0

    return _operator(action)


def cmd_key_create(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        reply = await client.create_key(args.tenant, admin=args.admin)
        key = reply.api_key
        print(f"API key {key.id} for tenant {key.tenant_id}{' (admin)' if key.admin else ''},"
              " shown once:")
        print(reply.secret)
        return 0

    return _operator(action)


def cmd_key_list(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        for key in await client.list_keys(args.tenant):
            state = "revoked" if key.HasField("revoke_time") else "active"
            print(f"{key.id}\t{key.prefix}…\t{'admin' if key.admin else 'user'}\t{state}")
        return 0

    return _operator(action)


def cmd_key_revoke(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        key = await client.revoke_key(args.key_id)
        print(f"API key {key.id} revoked")
        return 0

    return _operator(action)

def cmd_worker_token(args: argparse.Namespace) -> int:
    """create NAME (the token is the last line), list, revoke ID_OR_NAME."""

    async def action(client: OperatorClient) -> int:
        if args.action == "create":
            reply = await client.create_worker_token(args.target)
            token = reply.worker_token
            print(f"worker token {token.id} for identity {token.name}, shown once:")
            print(reply.secret)
        elif args.action == "revoke":
            token = await client.revoke_worker_token(args.target)
            print(f"worker token {token.id} ({token.name}) revoked; its leases are given up")
        else:
            for token in await client.list_worker_tokens():
                state = "revoked" if token.HasField("revoke_time") else "active"
                print(f"{token.id}\t{token.name}\t{token.prefix}…\t{state}")
        return 0

    return _operator(action)



# Command-line option -> quota field (the names of sluice.v1.Quota).
QUOTA_OPTIONS: dict[str, tuple[str, type]] = {
    "submit_rate": ("submit_rate_per_s", float),
    "submit_burst": ("submit_burst", int),
    "max_queued": ("max_queued_jobs", int),
    "max_running": ("max_running_jobs", int),
    "cpu_seconds_per_day": ("cpu_seconds_per_day", int),
    "max_wall_time_ms": ("max_wall_time_ms", int),
    "max_cpu_time_ms": ("max_cpu_time_ms", int),
    "max_memory_bytes": ("max_memory_bytes", int),
    "max_processes": ("max_processes", int),
    "max_output_bytes": ("max_output_bytes", int),
    "max_source_bytes": ("max_source_bytes", int),
}


def _print_quota(tenant_id: str, quota: adm.Quota, overrides: adm.Quota,
                 usage: adm.QuotaUsage | None) -> None:
    print(f"tenant {tenant_id}")
    for field in adm.Quota.DESCRIPTOR.fields:
        name = field.name
        origin = "set" if overrides.HasField(name) else "default"
        value = getattr(quota, name)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        print(f"  {name:<22} {shown:>14}  ({origin})")
    if usage is not None:
        print(f"  in use: {usage.queued_jobs} queued, {usage.running_jobs} running, "
              f"{usage.cpu_seconds_last_day:.1f} CPU-seconds in 24 h, "
              f"{usage.submit_tokens:.1f} submit tokens")


def cmd_quota_set(args: argparse.Namespace) -> int:
    changes = {field: kind(getattr(args, option))
               for option, (field, kind) in QUOTA_OPTIONS.items()
               if getattr(args, option) is not None}
    if not changes and not args.reset:
        print("sluice: name at least one quota to set (see --help) or --reset", file=sys.stderr)
        return 2
    for option, (field, _) in QUOTA_OPTIONS.items():
        if field in changes and changes[field] < 0:
            print(f"sluice: --{option.replace('_', '-')} is {changes[field]}; it must be >= 0",
                  file=sys.stderr)
            return 2
    try:
        quota = adm.Quota(**changes)
    except ValueError as exc:  # over the field's range (uint32)
        print(f"sluice: {exc}", file=sys.stderr)
        return 2

    async def action(client: OperatorClient) -> int:
        reply = await client.set_quota(args.tenant, quota, args.reset or [])
        _print_quota(reply.tenant_id, reply.quota, reply.overrides, None)
        return 0

    return _operator(action)


def cmd_quota_get(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        reply = await client.get_quota(args.tenant)
        _print_quota(reply.tenant_id, reply.quota, reply.overrides, reply.usage)
        return 0

    return _operator(action)


def _plain(value: object) -> object:
    """A Struct's numbers as they were written: JSON's 2, not protobuf's 2.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def cmd_audit(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        records = await client.audit(tenant=args.tenant or "", job_id=args.job or "",
                                     action=args.action or "", after_seq=args.after,
                                     limit=args.limit)
        for record in records:
            detail = _plain(MessageToDict(record.detail))
            print(f"{record.seq}\t{_when(record.time)}\t{record.tenant_id}\t{record.actor}"
                  f"\t{record.action}\t{record.job_id or '-'}"
                  f"\t{json.dumps(detail, sort_keys=True)}")
        return 0

    return _operator(action)


# Any tenant's jobs, for operators ------------------------------------------------------


def _state(name: str) -> int:
    full = name.upper() if name.upper().startswith("JOB_STATE_") else f"JOB_STATE_{name.upper()}"
    try:
        return pb.JobState.Value(full)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"no job state {name!r}: queued, running, succeeded, failed, cancelled,"
            " dead_lettered") from None


def _state_name(state: int) -> str:
    return pb.JobState.Name(state).removeprefix("JOB_STATE_")


def cmd_jobs_list(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        for job in await client.list_jobs(args.tenant, states=args.state or [],
                                          limit=args.limit):
            verdict = (pb.Verdict.Name(job.result.verdict).removeprefix("VERDICT_")
                       if job.result.verdict else "-")
            print(f"{job.id}\t{_state_name(job.state)}\t{job.language}\t{job.attempt}"
                  f"\t{_when(job.create_time)}\t{verdict}")
        return 0

    return _operator(action)


def cmd_jobs_get(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        job = await client.get_job(args.job_id)
        if args.json:
            print(MessageToJson(job, indent=2))
            return 0
        verdict = pb.Verdict.Name(job.result.verdict) if job.result.verdict else "-"
        for label, value in (("id", job.id), ("state", _state_name(job.state)),
                             ("language", job.language), ("attempt", job.attempt),
                             ("created", _when(job.create_time)),
                             ("started", _when(job.start_time)),
                             ("ended", _when(job.end_time)), ("verdict", verdict),
                             ("exit code", job.result.exit_code),
                             ("reason", job.state_reason or "-")):
            print(f"{label + ':':<10} {value}")
        return 0

    return _operator(action)


def cmd_jobs_watch(args: argparse.Namespace) -> int:
    from sluice.file_runner import report_result
    from sluice.terminal_session import stream_to_terminal

    async def action(client: OperatorClient) -> int:
        result = await stream_to_terminal(client.watch_job(args.job_id, args.after))
        if result is None:
            job = await client.get_job(args.job_id)
            if not job.HasField("result"):
                print(f"sluice: job {job.id} ended {_state_name(job.state)} without running",
                      file=sys.stderr)
                return 1
            result = job.result
        return report_result(result)

    return _operator(action)


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        job = await client.cancel_job(args.job_id)
        print(f"job {job.id} {_state_name(job.state)}"
              f"{' (its worker is told to stop it)' if job.state == pb.JOB_STATE_RUNNING else ''}")
        return 0

    return _operator(action)


# Dead letters --------------------------------------------------------------------------


def cmd_dead_letters_list(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        reply = await client.list_dead_letters(tenant=args.tenant or "", parked=args.parked,
                                               limit=args.limit)
        for letter in reply.dead_letters:
            print(f"{letter.job_id}\t{letter.tenant_id}\t{letter.replays}"
                  f"\t{'parked' if letter.parked else 'waiting'}\t{letter.reason}")
        print(f"sluice: {reply.dead_letter_queue_depth} message(s) in the dead-letter queue, "
              f"{reply.parked_queue_depth} parked", file=sys.stderr)
        return 0

    return _operator(action)


def cmd_dead_letters_replay(args: argparse.Namespace) -> int:
    if not (args.job_ids or args.tenant or args.all):
        print("sluice: name job ids, a --tenant, or --all", file=sys.stderr)
        return 2

    async def action(client: OperatorClient) -> int:
        replayed = await client.replay(job_ids=args.job_ids, tenant=args.tenant or "",
                                       replay_all=args.all)
        for job_id in replayed:
            print(job_id)
        print(f"sluice: {len(replayed)} job(s) replayed", file=sys.stderr)
        return 0

    return _operator(action)


def cmd_dead_letters_purge(args: argparse.Namespace) -> int:
    async def action(client: OperatorClient) -> int:
        print(f"{await client.purge_parked()} parked message(s) purged")
        return 0

    return _operator(action)


# The first admin key: the store itself ---------------------------------------------------


def cmd_admin_bootstrap(args: argparse.Namespace) -> int:
    from sluice.admin_bootstrap import AdminKeyExists, bootstrap_admin_key

    try:
        made = asyncio.run(bootstrap_admin_key(get_settings(), tenant_name=args.tenant,
                                               another=args.another))
    except AdminKeyExists as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 1
    print(f"admin key {made.key_id} for tenant {made.tenant_name} (id {made.tenant_id}), "
          "shown once:")
    print(made.secret)
    return 0


# Running a file ------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from sluice.file_runner import run_file

    if args.stdin and (args.interactive or args.cases):
        print("sluice run: --stdin goes with neither -i nor --cases", file=sys.stderr)
        return 2
    return asyncio.run(run_file(
        Path(args.file), language=args.language,
        stdin=Path(args.stdin).read_bytes() if args.stdin else b"",
        args=args.args, api_key=args.api_key, target=args.target,
        interactive=args.interactive, cases=Path(args.cases) if args.cases else None,
    ))


def cmd_migrate(args: argparse.Namespace) -> int:
    from control_plane.store.migrations import migrate_store

    print(asyncio.run(migrate_store(get_settings())))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from sluice.local_stack import run_local_stack

    return run_local_stack(workers=args.workers, sample=args.sample)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run control plane, workers and recovery on this machine")
    up.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    up.add_argument("--sample", action="store_true",
                    help="submit a sample job once the platform is up and stream its output")
    up.set_defaults(func=cmd_up)

    sub.add_parser("migrate", help="bring the store's schema up to date (SLUICE_STORE_URL)"
                   ).set_defaults(func=cmd_migrate)
    for name, module in (("control-plane", "control_plane.main"),
                         ("worker", "execution_plane.main"), ("recovery", "recovery.main"),
                         ("console", "console.main")):
        service = sub.add_parser(name, help=f"run the {name} service alone")
        service.set_defaults(func=lambda _args, module=module: _run_service(module))

    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(dest="action",
                                                                       required=True)
    create = tenant.add_parser("create", help="create a tenant; its key is the last line")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="the first key is an admin key")
    create.set_defaults(func=cmd_tenant_create)
    tenant.add_parser("list").set_defaults(func=cmd_tenant_list)
    for action, text in (("pause", "its jobs wait (new ones are accepted); running ones finish"),
                         ("resume", "its waiting jobs start again")):
        pause = tenant.add_parser(action, help=text)
        pause.add_argument("tenant", help="tenant id or name")
        pause.set_defaults(func=cmd_tenant_pause)

    workers = sub.add_parser("workers", help="worker processes and their controls"
                             ).add_subparsers(dest="action", required=True)
    workers.add_parser("list", help="languages, slots, running jobs, last heartbeat"
                       ).set_defaults(func=cmd_workers)
    for action, text in (("drain", "take no new job, finish the running ones"),
                         ("undrain", "take jobs again"),
                         ("slots", "run this many jobs at once (live; never stops a job)")):
        control = workers.add_parser(action, help=text)
        control.add_argument("worker_id", help="from `sluice workers list`")
        if action == "slots":
            control.add_argument("slots", type=int, nargs="?")
            control.add_argument("--reset", action="store_true",
                                 help="back to the slots it started with")
        control.set_defaults(func=cmd_workers)
    sub.add_parser("queues", help="queue depths read from the broker now"
                   ).set_defaults(func=cmd_queues)

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    key_create = key.add_parser("create", help="issue a key; it is the last line")
    key_create.add_argument("tenant", help="tenant id or name")
    key_create.add_argument("--admin", action="store_true")
    key_create.set_defaults(func=cmd_key_create)
    key_list = key.add_parser("list")
    key_list.add_argument("tenant", help="tenant id or name")
    key_list.set_defaults(func=cmd_key_list)
    key_revoke = key.add_parser("revoke")
    key_revoke.add_argument("key_id")
    key_revoke.set_defaults(func=cmd_key_revoke)

    worker_token = sub.add_parser("worker-token", help="worker credentials on the gateway"
                                  ).add_subparsers(dest="action", required=True)
    for action, target, text in (("create", "name", "mint one; it is the last line"),
                                 ("list", None, "live and revoked tokens"),
                                 ("revoke", "id_or_name", "revoke now; its streams end")):
        parser_ = worker_token.add_parser(action, help=text)
        if target:
            parser_.add_argument("target", metavar=target.upper())
        parser_.set_defaults(func=cmd_worker_token)

    quota = sub.add_parser("quota", help="tenant quotas").add_subparsers(dest="action",
                                                                        required=True)
    quota_set = quota.add_parser("set", help="change a tenant's quotas (the rest stay)")
    quota_set.add_argument("tenant", help="tenant id or name")
    for option, (field, kind) in QUOTA_OPTIONS.items():
        quota_set.add_argument(f"--{option.replace('_', '-')}", dest=option, type=kind,
                               metavar="N", help=f"quota {field}")
    quota_set.add_argument("--reset", action="append", metavar="FIELD",
                           help="back to the platform default (a quota field name); repeatable")
    quota_set.set_defaults(func=cmd_quota_set)
    quota_get = quota.add_parser("get", help="a tenant's quotas and what it uses of them")
    quota_get.add_argument("tenant", help="tenant id or name")
    quota_get.set_defaults(func=cmd_quota_get)

    audit = sub.add_parser("audit", help="the audit trail, oldest first")
    audit.add_argument("--tenant", help="tenant id or name")
    audit.add_argument("--job", help="job id")
    audit.add_argument("--action", help="e.g. submitted, key_revoked, quota_changed")
    audit.add_argument("--after", type=int, default=0, metavar="SEQ",
                       help="only records after this seq (the first column)")
    audit.add_argument("--limit", type=int, default=100)
    audit.set_defaults(func=cmd_audit)

    jobs = sub.add_parser("jobs", help="any tenant's jobs").add_subparsers(dest="action",
                                                                          required=True)
    jobs_list = jobs.add_parser("list", help="a tenant's jobs, newest first")
    jobs_list.add_argument("tenant", help="tenant id or name")
    jobs_list.add_argument("--state", action="append", type=_state,
                           help="only jobs in this state (queued, running, ...); repeatable")
    jobs_list.add_argument("--limit", type=int, default=100)
    jobs_list.set_defaults(func=cmd_jobs_list)
    jobs_get = jobs.add_parser("get", help="one job")
    jobs_get.add_argument("job_id")
    jobs_get.add_argument("--json", action="store_true", help="the whole Job, as JSON")
    jobs_get.set_defaults(func=cmd_jobs_get)
    jobs_watch = jobs.add_parser("watch", help="stream a job's output here until it ends")
    jobs_watch.add_argument("job_id")
    jobs_watch.add_argument("--after", type=int, default=0, metavar="SEQ",
                            help="only events after this seq")
    jobs_watch.set_defaults(func=cmd_jobs_watch)
    jobs_cancel = jobs.add_parser("cancel", help="cancel a job")
    jobs_cancel.add_argument("job_id")
    jobs_cancel.set_defaults(func=cmd_jobs_cancel)

    dead = sub.add_parser("dead-letters", help="dead-lettered jobs").add_subparsers(
        dest="action", required=True)
    dead_list = dead.add_parser("list", help="dead letters, oldest first")
    dead_list.add_argument("--tenant", help="tenant id or name")
    which = dead_list.add_mutually_exclusive_group()
    which.add_argument("--parked", dest="parked", action="store_const", const=True,
                       help="only those over their replay budget")
    which.add_argument("--waiting", dest="parked", action="store_const", const=False,
                       help="only those awaiting replay")
    dead_list.add_argument("--limit", type=int, default=100)
    dead_list.set_defaults(func=cmd_dead_letters_list, parked=None)
    dead_replay = dead.add_parser("replay", help="run dead-lettered jobs again")
    dead_replay.add_argument("job_ids", nargs="*", help="these jobs")
    dead_replay.add_argument("--tenant", help="a tenant's (id or name)")
    dead_replay.add_argument("--all", action="store_true", help="every dead-lettered job")
    dead_replay.set_defaults(func=cmd_dead_letters_replay)
    dead.add_parser("purge", help="empty the parking lot (those jobs stay dead-lettered)"
                    ).set_defaults(func=cmd_dead_letters_purge)

    admin = sub.add_parser("admin", help="the platform's operators").add_subparsers(
        dest="action", required=True)
    bootstrap = admin.add_parser(
        "bootstrap", help="make the first admin key, in the store itself; it is the last line")
    bootstrap.add_argument("--tenant", default=OPERATOR_TENANT,
                           help=f"the operators' tenant (default {OPERATOR_TENANT})")
    bootstrap.add_argument("--another", "--force", dest="another", action="store_true",
                           help="make one even though an admin key exists")
    bootstrap.set_defaults(func=cmd_admin_bootstrap)

    run = sub.add_parser("run", help="submit a file and stream its output here")
    run.add_argument("file")
    run.add_argument("--language", help="language id (default: from the file's extension)")
    run.add_argument("--stdin", help="a file to give the program as its stdin")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("-i", "--interactive", action="store_true",
                      help="this terminal is the program's stdin and stdout (Ctrl-D closes "
                           "its stdin, Ctrl-C cancels the job)")
    mode.add_argument("--cases", metavar="DIR",
                      help="run DIR/*.in against DIR/*.out, compiled once; print a table")
    run.add_argument("--api-key", default=os.environ.get("SLUICE_API_KEY"),
                     help="default: $SLUICE_API_KEY, else the key `sluice up` left")
    run.add_argument("--target", default=None,
                     help="API address (default SLUICE_API_TARGET, else SLUICE_API_LISTEN)")
    run.add_argument("args", nargs="*", help="arguments for the program (after --)")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        code = 130
    except grpc.aio.AioRpcError as exc:
        print(f"sluice: {exc.code().name}: {exc.details()}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
