"""One slot of the pool: its runner process, its unprivileged uid, its work dir, its cgroup.

A slot runs one step at a time. The service talks to the slot's runner over a
SOCK_SEQPACKET socket (see runner.py for the protocol) and never forks user code itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from execution_plane.sandbox import workdir
from execution_plane.sandbox.cgroups import SlotCgroup

RUNNER_SCRIPT = str(Path(__file__).with_name("runner.py"))
MAX_MESSAGE = 1 << 16


def _shield_from_oom_killer(pid: int) -> None:
    # The runner must not be the OOM killer's pick. Exempting it needs CAP_SYS_RESOURCE,
    # which containers often lack; the runs then raise their own score instead.
    with contextlib.suppress(PermissionError):
        Path(f"/proc/{pid}/oom_score_adj").write_text("-1000")


class SlotBroken(Exception):
    """The runner died or answered nonsense; the slot must be restarted."""


@dataclass
class Exit:
    status: int  # wait status of the bwrap process
    cpu_ns: int  # rusage of the reaped tree (a fallback; the cgroup is the real figure)
    maxrss: int


class Slot:
    def __init__(
        self,
        index: int,
        uid: int,
        work_dir: str,
        bwrap: str,
        seccomp_bpf: bytes,
        cgroup: SlotCgroup,
    ) -> None:
        self.index = index
        self.uid = uid
        self.gid = uid
        self.work_dir = work_dir
        self.bwrap = bwrap
        self.seccomp_bpf = seccomp_bpf
        self.cgroup = cgroup
        self.process: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self.events: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.workdir_bytes = 0
        self.broken = False  # set when a run may still be in flight; restart before reuse

    @property
    def runner_pid(self) -> int:
        return self.process.pid if self.process else -1

    async def start(self) -> None:
        os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                RUNNER_SCRIPT,
                str(theirs.fileno()),
                str(self.uid),
                str(self.gid),
                self.bwrap,
                pass_fds=[theirs.fileno()],
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                env={},
                cwd="/",
                # Out of the worker's process group: a SIGTERM or Ctrl-C sent to the group is
                # the worker's to handle (finish its runs within the grace, then stop them),
                # not the runner's to die of mid-run. PDEATHSIG still ties it to the worker.
                start_new_session=True,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        _shield_from_oom_killer(self.process.pid)
        self.cgroup.attach(self.process.pid)
        self.events = asyncio.Queue()
        self.reader = asyncio.create_task(self._read_events())
        self._send({"op": "init", "seccomp": base64.b64encode(self.seccomp_bpf).decode()})

    async def _read_events(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.sock is not None
        try:
            while True:
                data = await loop.sock_recv(self.sock, MAX_MESSAGE)
                if not data:
                    break
                await self.events.put(json.loads(data))
        except (OSError, ValueError):
            pass
        self.broken = True
        await self.events.put({"ev": "gone"})

    def _send(self, message: dict[str, object], fds: list[int] | None = None) -> None:
        if self.sock is None:
            raise SlotBroken("runner not started")
        try:
            socket.send_fds(self.sock, [json.dumps(message).encode()], fds or [])
        except OSError as exc:
            raise SlotBroken(f"runner unreachable: {exc}") from exc

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None and bool(self.sock)

    async def launch(
        self, argv: list[str], rlimits: list[tuple[int, int, int]], fds: list[int]
    ) -> None:
        """Start one sandboxed process tree; returns once bwrap has been exec'd."""
        while not self.events.empty():  # stale events of a previous, failed step
            self.events.get_nowait()
        self._send({"op": "run", "argv": argv, "rlimits": rlimits}, fds)
        event = await self.events.get()
        if event.get("ev") == "started":
            return
        if event.get("ev") == "error":
            raise SlotBroken(str(event.get("detail", "runner error")))
        raise SlotBroken("runner died")

    async def wait_exit(self) -> Exit:
        while True:
            event = await self.events.get()
            if event.get("ev") == "exited":
                return Exit(
                    status=int(event["status"]),  # type: ignore[call-overload]
                    cpu_ns=int(event["cpu_ns"]),  # type: ignore[call-overload]
                    maxrss=int(event["maxrss"]),  # type: ignore[call-overload]
                )
            if event.get("ev") == "gone":
                raise SlotBroken("runner died during a run")

    async def kill_run(self) -> None:
        """SIGKILL the current bwrap (its pid namespace goes with it), then the cgroup."""
        with contextlib.suppress(SlotBroken):
            self._send({"op": "kill"})
        await self.cgroup.kill_all(spare=self.runner_pid)

    def reset_workdir(self, size_bytes: int) -> None:
        workdir.unmount(self.work_dir)
        workdir.mount_tmpfs(self.work_dir, size_bytes, self.uid, self.gid)
        self.workdir_bytes = size_bytes

    async def close(self) -> None:
        if self.process:
            # A runner that died itself (killed, crashed) leaves its run to PDEATHSIG, which
            # lands a moment later and one process at a time: kill what is left now.
            await self.cgroup.kill_all(spare=self.process.pid)
        if self.reader:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
            self.events.put_nowait({"ev": "gone"})  # wake a step still waiting on this slot
        if self.sock:
            # EOF tells the runner to reap its children and exit: a runner killed outright
            # would leave them as zombies of whatever init adopts them.
            self.sock.close()
            self.sock = None
        if self.process and self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), timeout=2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        with contextlib.suppress(OSError):
            workdir.unmount(self.work_dir)
        with contextlib.suppress(OSError):
            os.rmdir(self.work_dir)
