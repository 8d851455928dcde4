"""The `sluice` command: run the services, manage tenants and keys, run a file.

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
    from control_plane.store.database import Database
    from control_plane.store.tenants import TenantStore

    db = Database(get_settings().sqlite_path)
    await db.open()
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


# Running a file ------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from sluice.file_runner import run_file

    return asyncio.run(run_file(
        Path(args.file), language=args.language,
        stdin=Path(args.stdin).read_bytes() if args.stdin else b"",
        args=args.args, api_key=args.api_key, target=args.target,
    ))


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
