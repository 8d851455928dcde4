"""The `sluice` command: run the services, manage tenants, keys and quotas, run a file.

The planes are imported only by the subcommand that runs them, so the kernel stays the
kernel: `sluice worker` never loads the control plane, and the other way round.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from pathlib import Path

import grpc

from sluice.settings import get_settings


def _run_service(module: str) -> int:
    importlib.import_module(module).main()
    return 0


# Tenants and keys: straight to the store named by the same settings ----------------------


async def _with_tenant_store(action):
    from control_plane.store.backend import open_store
    from control_plane.store.tenants import TenantStore

    db = await open_store(get_settings())
    try:
        return await action(TenantStore(db))
    finally:
        await db.close()


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from control_plane.store.tenants import TenantExists

    async def action(store):
        tenant = await store.create_tenant(args.name)
        key, secret = await store.create_key(tenant.id, admin=args.admin)
        return tenant, key, secret

    try:
        tenant, key, secret = asyncio.run(_with_tenant_store(action))
    except TenantExists as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 1
    print(f"tenant {tenant.name} created (id {tenant.id}); API key {key.id}"
          f"{' (admin)' if key.admin else ''}, shown once:")
    print(secret)
    return 0


def cmd_tenant_list(args: argparse.Namespace) -> int:
    tenants = asyncio.run(_with_tenant_store(lambda store: store.list_tenants()))
    for tenant in tenants:
        print(f"{tenant.id}\t{tenant.name}")
    return 0


def cmd_key_create(args: argparse.Namespace) -> int:
    from control_plane.store.tenants import UnknownTenant

    async def action(store):
        tenant = await store.get_tenant(args.tenant)
        if tenant is None:
            raise UnknownTenant(f"no tenant {args.tenant!r} (give its id or name)")
        return await store.create_key(tenant.id, admin=args.admin)

    try:
        key, secret = asyncio.run(_with_tenant_store(action))
    except UnknownTenant as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 1
    print(f"API key {key.id} for tenant {key.tenant_id}{' (admin)' if key.admin else ''},"
          " shown once:")
    print(secret)
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    async def action(store):
        tenant = await store.get_tenant(args.tenant)
        return [] if tenant is None else await store.list_keys(tenant.id)

    for key in asyncio.run(_with_tenant_store(action)):
        state = "revoked" if key.revoked_at else "active"
        print(f"{key.id}\t{key.prefix}…\t{'admin' if key.admin else 'user'}\t{state}")
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    key = asyncio.run(_with_tenant_store(lambda store: store.revoke_key(args.key_id)))
    if key is None:
        print(f"sluice: no key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"API key {key.id} revoked")
    return 0


# Quotas and the audit trail: straight to the store too ---------------------------------

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


async def _with_quota_store(action):
    from control_plane.store.backend import open_store
    from control_plane.store.quotas import QuotaStore, TenantQuota

    settings = get_settings()
    db = await open_store(settings)
    try:
        return await action(QuotaStore(db, TenantQuota.defaults(settings)))
    finally:
        await db.close()


def _print_quota(view) -> None:
    from control_plane.store.quotas import QUOTA_FIELDS

    print(f"tenant {view.tenant_id}")
    for name in QUOTA_FIELDS:
        origin = "set" if name in view.overrides else "default"
        value = getattr(view.quota, name)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        print(f"  {name:<22} {shown:>14}  ({origin})")
    if view.usage is not None:
        usage = view.usage
        print(f"  in use: {usage.queued_jobs} queued, {usage.running_jobs} running, "
              f"{usage.cpu_ms_last_day / 1000:.1f} CPU-seconds in 24 h, "
              f"{usage.submit_tokens:.1f} submit tokens")


def cmd_quota_set(args: argparse.Namespace) -> int:
    from control_plane.store.quotas import InvalidQuota
    from control_plane.store.tenants import UnknownTenant

    changes = {field: kind(getattr(args, option))
               for option, (field, kind) in QUOTA_OPTIONS.items()
               if getattr(args, option) is not None}
    if not changes and not args.reset:
        print("sluice: name at least one quota to set (see --help) or --reset", file=sys.stderr)
        return 2
    try:
        view = asyncio.run(_with_quota_store(
            lambda store: store.set(args.tenant, changes, args.reset or [], actor="cli")))
    except (InvalidQuota, UnknownTenant) as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 1
    _print_quota(view)
    return 0


def cmd_quota_get(args: argparse.Namespace) -> int:
    from control_plane.store.tenants import UnknownTenant

    try:
        view = asyncio.run(_with_quota_store(lambda store: store.get(args.tenant)))
    except UnknownTenant as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 1
    _print_quota(view)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from control_plane.store.audit import AuditLog
    from control_plane.store.backend import open_store
    from control_plane.store.tenants import TenantStore

    async def query():
        db = await open_store(get_settings())
        try:
            tenant_id = ""
            if args.tenant:
                tenant = await TenantStore(db).get_tenant(args.tenant)
                if tenant is None:
                    return None
                tenant_id = tenant.id
            return await AuditLog(db).query(tenant_id=tenant_id, job_id=args.job or "",
                                            action=args.action or "", after_seq=args.after,
                                            limit=args.limit)
        finally:
            await db.close()

    records = asyncio.run(query())
    if records is None:
        print(f"sluice: no tenant {args.tenant!r} (give its id or name)", file=sys.stderr)
        return 1
    for record in records:
        when = datetime.fromtimestamp(record.time, UTC).isoformat(timespec="milliseconds")
        print(f"{record.seq}\t{when}\t{record.tenant_id}\t{record.actor}\t{record.action}"
              f"\t{record.job_id or '-'}\t{json.dumps(record.detail, sort_keys=True)}")
    return 0


# Running a file ------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from sluice.file_runner import run_file

    return asyncio.run(run_file(
        Path(args.file), language=args.language,
        stdin=Path(args.stdin).read_bytes() if args.stdin else b"",
        args=args.args, api_key=args.api_key, target=args.target,
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
                         ("worker", "execution_plane.main"), ("recovery", "recovery.main")):
        service = sub.add_parser(name, help=f"run the {name} service alone")
        service.set_defaults(func=lambda _args, module=module: _run_service(module))

    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(dest="action",
                                                                       required=True)
    create = tenant.add_parser("create", help="create a tenant; its key is the last line")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="the first key is an admin key")
    create.set_defaults(func=cmd_tenant_create)
    tenant.add_parser("list").set_defaults(func=cmd_tenant_list)

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

    run = sub.add_parser("run", help="submit a file and stream its output here")
    run.add_argument("file")
    run.add_argument("--language", help="language id (default: from the file's extension)")
    run.add_argument("--stdin", help="a file to give the program as its stdin")
    run.add_argument("--api-key", default=os.environ.get("SLUICE_API_KEY"),
                     help="default: $SLUICE_API_KEY, else the key `sluice up` left")
    run.add_argument("--target", default=None, help="API address (default SLUICE_API_LISTEN)")
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
