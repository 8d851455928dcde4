"""Attacks on isolation: the host, the platform and other jobs stay out of reach."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from pathlib import Path

import pytest

from execution_plane.sandbox import SandboxPool, SourceFile, Verdict
from tests.sandbox.harness import assert_host_untouched, run
from tests.security.conftest import WORKER_SECRET

BROKER_PORT = 5672
API_PORT = 50051


def _listen(port: int) -> socket.socket | None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None  # the real broker or API is there: the program must not reach it either
    sock.listen(8)
    sock.setblocking(False)
    return sock


def _accepted(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


async def test_network_cannot_reach_the_broker_or_the_api(pool: SandboxPool, run_job) -> None:
    listeners = [s for s in (_listen(BROKER_PORT), _listen(API_PORT), _listen(0)) if s]
    ports = sorted({BROKER_PORT, API_PORT, *(s.getsockname()[1] for s in listeners)})
    abstract = socket.socket(socket.AF_UNIX)
    abstract_name = "\0sluice-test-" + secrets.token_hex(4)
    abstract.bind(abstract_name)
    abstract.listen(1)
    source = (
        "import socket, json\nresults = {}\n"
        f"for port in {ports!r}:\n"
        "    for family, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):\n"
        "        try:\n"
        "            s = socket.socket(family)\n"
        "            s.settimeout(1)\n"
        "            s.connect((host, port))\n"
        "            results[f'{host}:{port}'] = 'CONNECTED'\n"
        "        except OSError as e:\n"
        "            results[f'{host}:{port}'] = type(e).__name__\n"
        "for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):\n"
        "    try:\n"
        "        socket.socket(socket.AF_NETLINK, kind, 0)\n"
        "        results[f'netlink{kind}'] = 'OPENED'\n"
        "    except OSError as e:\n"
        "        results[f'netlink{kind}'] = type(e).__name__\n"
        "try:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        f"    s.connect({abstract_name!r})\n"
        "    results['abstract'] = 'CONNECTED'\n"
        "except OSError as e:\n"
        "    results['abstract'] = type(e).__name__\n"
        "print(json.dumps(results))\n"
    )
    try:
        ran = await run_job("python", source)
        await asyncio.sleep(0.1)
        assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
        results = json.loads(ran.stdout)
        assert "CONNECTED" not in results.values() and "OPENED" not in results.values(), results
        assert not any(_accepted(s) for s in listeners)
    finally:
        for s in [*listeners, abstract]:
            s.close()
    await assert_host_untouched(pool)


async def test_host_secrets_are_out_of_reach(pool: SandboxPool, run_job) -> None:
    source = r"""
import os, glob
seen = [repr(dict(os.environ))]
for path in ['/proc/1/environ', '/proc/self/environ', *glob.glob('/proc/[0-9]*/environ'),
             '/etc/shadow', '/etc/passwd', '/root/.bash_history', '/proc/1/cmdline']:
    try:
        seen.append(open(path, 'rb').read().decode(errors='replace'))
        print('read', path)
    except OSError as e:
        print('denied', path, type(e).__name__)
for path in ['/root', '/home', '/etc', '/proc']:
    try:
        print('list', path, sorted(os.listdir(path)))
    except OSError as e:
        print('denied', path, type(e).__name__)
print('\n'.join(seen))
"""
    ran = await run_job("python", source)
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    out = ran.stdout.decode()
    assert WORKER_SECRET not in out and "SLUICE_" not in out
    assert "denied /etc/shadow" in out and "denied /root " in out
    assert "list /etc ['ld.so.cache']" in out
    pids = [p for p in out.split("list /proc ")[1].splitlines()[0].strip("[]").split(", ")]
    assert len([p for p in pids if p.strip("'").isdigit()]) <= 3  # only this sandbox's pids
    await assert_host_untouched(pool)


async def test_writing_outside_the_work_dir_fails(pool: SandboxPool, run_job) -> None:
    token = secrets.token_hex(6)
    targets = [
        f"/escape-{token}",
        f"/usr/escape-{token}",
        f"/etc/escape-{token}",
        f"/usr/lib/python3.11/escape-{token}",
        f"/work/../escape-{token}",
        "/proc/sys/kernel/hostname",
        "/proc/sysrq-trigger",
    ]
    source = (
        "import json\nresults = {}\n"
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        with open(path, 'w') as f:\n"
        "            f.write('x')\n"
        "        results[path] = 'WROTE'\n"
        "    except OSError as e:\n"
        "        results[path] = type(e).__name__\n"
        "with open('/work/inside', 'w') as f:\n"
        "    f.write('fine')\n"
        "print(json.dumps(results))\n"
    )
    ran = await run_job("python", source)
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    assert "WROTE" not in json.loads(ran.stdout).values()
    assert _existing(targets[:5]) == []
    assert _read("/proc/sys/kernel/hostname").strip() != "x"
    await assert_host_untouched(pool)


def _existing(paths: list[str]) -> list[str]:
    return [path for path in paths if os.path.exists(os.path.normpath(path))]


def _read(path: str | Path) -> str:
    return Path(path).read_text()


def _make_victim(directory: Path) -> Path:
    """A host file any uid could write: the worst case for a worker that follows links."""
    victim = directory / "victim"
    victim.write_text("original")
    victim.chmod(0o666)
    directory.chmod(0o777)
    return victim


async def test_symlinks_planted_by_a_job_are_never_followed(
    solo_pool: SandboxPool, tmp_path: Path
) -> None:
    victim = _make_victim(tmp_path)
    plant = (
        "import os\n"
        "os.remove('main.py')\n"
        f"for name in ('main.py', 'helper.py', 'stdin', 'main', 'output'):\n"
        f"    os.symlink({str(victim)!r}, name)\n"
        "os.mkdir('pkg')\n"
        "os.symlink('/', 'pkg/root')\n"
        "try:\n"
        "    os.link('/usr/bin/python3', 'hard')\n"
        "except OSError as e:\n"
        "    print('link', type(e).__name__)\n"
        "print(sorted(os.listdir('.')))\n"
    )
    first = await run(solo_pool, "python", plant)
    assert first.outcome.verdict is Verdict.OK, (first.outcome, first.stderr)
    assert b"link" in first.stdout
    # The same slot's next job: the worker writes files named like the planted links.
    second = await run(
        solo_pool,
        "python",
        "import os, helper\nprint(sorted(os.listdir('.')), helper.X)\n",
        extra_files=[SourceFile("helper.py", b"X = 1\n"), SourceFile("pkg/root", b"")],
    )
    assert second.outcome.verdict is Verdict.OK, (second.outcome, second.stderr)
    assert second.stdout == b"['helper.py', 'main.py', 'pkg'] 1\n"
    assert _read(victim) == "original"
    # Inside the sandbox, a link to a host path resolves in the sandbox's own tree.
    inside = await run(
        solo_pool,
        "python",
        f"import os\nos.symlink({str(victim)!r}, 'l')\n"
        "try:\n    open('l', 'w').write('pwned')\nexcept OSError as e:\n"
        "    print(type(e).__name__)\n",
    )
    assert inside.stdout == b"FileNotFoundError\n"
    assert _read(victim) == "original"
    await assert_host_untouched(solo_pool)


@pytest.mark.parametrize(
    "language,source",
    [
        ("bash", "(setsid sleep 1000 &)\n(trap '' HUP; nohup sleep 1000 >/dev/null 2>&1 &)\n"),
        (
            "python",
            "import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        os.closerange(0, 3)\n"
            "        time.sleep(1000)\n"
            "    os._exit(0)\n"
            "print('parent done')\n",
        ),
    ],
)
async def test_a_background_daemon_dies_with_the_job(
    pool: SandboxPool, run_job, language: str, source: str
) -> None:
    ran = await run_job(language, source)
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    await assert_host_untouched(pool)


async def test_kill_minus_one_harms_nobody_else(pool: SandboxPool, run_job) -> None:
    # Bystanders: a root process, a nobody process, and one with the very host uid of
    # every slot (what the job's uid maps to outside).
    uids = [0, 65534, *(slot.uid for slot in pool.slots)]
    bystanders = [
        await asyncio.create_subprocess_exec("sleep", "60", user=uid, group=uid) for uid in uids
    ]
    source = (
        "import os, signal\n"
        "for target in (-1, 1):\n"
        "    try:\n"
        "        os.kill(target, signal.SIGKILL)\n"
        "    except OSError as e:\n"
        "        print(target, type(e).__name__)\n"
        "print('alive')\n"
    )
    try:
        ran = await run_job("python", source)
        assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
        await asyncio.sleep(0.1)
        assert all(p.returncode is None for p in bystanders)
    finally:
        for p in bystanders:
            p.kill()
            await p.wait()
    await assert_host_untouched(pool)


async def test_devices(pool: SandboxPool, run_job) -> None:
    source = r"""
import os, json
results = {'dev': sorted(os.listdir('/dev'))}
for path in ['/dev/mem', '/dev/kmem', '/dev/sda', '/dev/vda', '/dev/kmsg', '/dev/tty',
             '/dev/port', '/dev/fuse', '/dev/net/tun']:
    try:
        os.close(os.open(path, os.O_RDWR))
        results[path] = 'OPENED'
    except OSError as e:
        results[path] = type(e).__name__
try:
    os.mknod('/work/mem', 0o666 | 0o020000, os.makedev(1, 1))
    results['mknod'] = 'MADE'
except OSError as e:
    results['mknod'] = type(e).__name__
with open('/dev/null', 'w') as f:
    f.write('fine')
results['urandom'] = len(open('/dev/urandom', 'rb').read(16))
print(json.dumps(results))
"""
    ran = await run_job("python", source)
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    results = json.loads(ran.stdout)
    devices = {"null", "zero", "urandom", "fd", "stdin", "stdout", "stderr"}
    assert set(results.pop("dev")) == devices
    assert results.pop("urandom") == 16
    assert "OPENED" not in results.values() and results["mknod"] != "MADE", results
    await assert_host_untouched(pool)


async def test_mount_unshare_ptrace_and_friends_are_refused(pool: SandboxPool, run_job) -> None:
    source = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    ctypes.set_errno(0)
    result = getattr(libc, name)(*args)
    return 'OK' if result != -1 else os.strerror(ctypes.get_errno())
def syscall(number, *args):
    ctypes.set_errno(0)
    result = libc.syscall(number, *args)
    return 'OK' if result != -1 else os.strerror(ctypes.get_errno())
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID = 0x20000, 0x10000000, 0x40000000, 0x20000000
results = {
    'mount tmpfs': call('mount', b'none', b'/tmp', b'tmpfs', 0, None),
    'umount /proc': call('umount2', b'/proc', 2),
    'unshare user': call('unshare', CLONE_NEWUSER),
    'unshare mount': call('unshare', CLONE_NEWNS),
    'unshare net': call('unshare', CLONE_NEWNET),
    'ptrace attach 1': call('ptrace', 16, 1, None, None),
    'ptrace attach parent': call('ptrace', 16, os.getppid(), None, None),
    'setns': call('setns', os.open('/proc/self/ns/mnt', os.O_RDONLY), 0),
    'chroot': call('chroot', b'/tmp'),
    'clone newuser': syscall(56, CLONE_NEWUSER | 17, None, None, None, None),
    'clone newpid': syscall(56, CLONE_NEWPID | 17, None, None, None, None),
    'bpf': syscall(321, 0, None, 0),
    'keyctl': syscall(250, 0, 0),
    'io_uring_setup': syscall(425, 8, None),
    'perf_event_open': syscall(298, None, 0, -1, -1, 0),
    'setuid 0': call('setuid', 0),
    'process_vm_readv 1': syscall(310, 1, None, 0, None, 0, 0),
}
status = open('/proc/self/status').read()
results['no_new_privs'] = 'NoNewPrivs:\t1' in status
results['seccomp'] = 'Seccomp:\t2' in status
results['no caps'] = 'CapEff:\t0000000000000000' in status
results['uid'] = os.getuid()
print(json.dumps(results))
"""
    ran = await run_job("python", source)
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    results = json.loads(ran.stdout)
    flags = {k: results.pop(k) for k in ("no_new_privs", "seccomp", "no caps", "uid")}
    assert flags == {"no_new_privs": True, "seccomp": True, "no caps": True, "uid": 1000}
    assert "OK" not in results.values(), results
    await assert_host_untouched(pool)


async def test_setuid_binaries_give_nothing(pool: SandboxPool, run_job) -> None:
    source = (
        "for tool in su mount passwd newgrp; do\n"
        '  p=$(command -v "$tool") || continue\n'
        '  echo "$tool $(stat -c %A "$p")"\n'
        "done\n"
        "su -c 'id -u' root </dev/null 2>&1 | head -1\n"
        "id -u\n"
    )
    ran = await run_job("bash", source)
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    lines = ran.stdout.decode().splitlines()
    assert lines[-1] == "1000"
    assert "0" not in lines[:-1]
    await assert_host_untouched(pool)


async def test_one_job_cannot_read_another(pool: SandboxPool) -> None:
    secret = "other-job-" + secrets.token_hex(8)
    holder = (
        "import time\n"
        f"open('/work/secret', 'w').write({secret!r})\n"
        f"open('/tmp/secret', 'w').write({secret!r})\n"
        "print('ready', flush=True)\n"
        "time.sleep(3)\n"
    )
    seeker = r"""
import os
needle = 'SECRET'[::-1].encode()  # reversed, so this very file does not match
found = []
for top in ['/', '/proc']:
    for root, dirs, files in os.walk(top):
        if root.startswith('/proc/') and root.count('/') > 3:
            dirs[:] = []
        if root.startswith(('/usr', '/proc/sys', '/sys')):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, 'rb') as f:
                    if needle in f.read(1 << 20):
                        found.append(path)
            except OSError:
                pass
for pid in os.listdir('/proc'):
    if pid.isdigit():
        for link in ('root', 'cwd'):
            try:
                print(pid, link, os.listdir(f'/proc/{pid}/{link}'))
            except OSError:
                pass
print('found', found)
""".replace("SECRET", secret[::-1])
    holding = asyncio.create_task(run(pool, "python", holder))
    await asyncio.sleep(0.5)
    seeking = await run(pool, "python", seeker)
    held = await holding
    assert held.outcome.verdict is Verdict.OK and held.stdout == b"ready\n"
    assert seeking.outcome.verdict is Verdict.OK, (seeking.outcome, seeking.stderr)
    assert seeking.stdout.decode().splitlines()[-1] == "found []"
    assert secret.encode() not in seeking.stdout
    await assert_host_untouched(pool)


async def test_the_next_job_on_a_slot_sees_nothing_of_the_last(solo_pool: SandboxPool) -> None:
    first = await run(
        solo_pool, "python", "open('/work/left', 'w').write('x')\nopen('/tmp/left', 'w')\n"
    )
    assert first.outcome.verdict is Verdict.OK
    second = await run(
        solo_pool, "python", "import os\nprint(sorted(os.listdir('/work')), os.listdir('/tmp'))\n"
    )
    assert second.stdout == b"['main.py'] []\n"
    await assert_host_untouched(solo_pool)
