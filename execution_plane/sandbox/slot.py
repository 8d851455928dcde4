"""One slot of the pool: its runner process, its unprivileged uid, its work dir and /tmp,
its cgroups, and its sandbox made ahead of time.

A slot runs one step at a time. The service talks to the slot's runner over a
SOCK_SEQPACKET socket (see runner.py for the protocol) and never forks user code itself;
the runner starts the slot's sandbox (warm.py), whose init runs each step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from execution_plane.sandbox import workdir
from execution_plane.sandbox.bwrap import TMP_BYTES
from execution_plane.sandbox.cgroups import SlotCgroup
from execution_plane.sandbox.socket_messages import read_messages
from execution_plane.sandbox.warm import WarmSandbox

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
        self.work_dir = work_dir  # the anchor of the sandbox's /work (workdir.py)
        self.tmp_dir = f"{work_dir}-tmp"  # and of its /tmp
        self.mounted: set[str] = set()  # which anchors have a tmpfs over them
        self.bwrap = bwrap
        self.seccomp_bpf = seccomp_bpf
        self.cgroup = cgroup
        self.process: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self.events: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.workdir_bytes = 0
        self.broken = False  # set when a run may still be in flight; restart before reuse
        self.sandbox: WarmSandbox | None = None

    @property
    def runner_pid(self) -> int:
        return self.process.pid if self.process else -1

    async def start(self) -> None:
        for anchor in (self.work_dir, self.tmp_dir):
            await asyncio.to_thread(workdir.make_anchor, anchor)
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
        self.cgroup.attach_home(self.process.pid)
        self.events = asyncio.Queue()
        self.reader = asyncio.create_task(self._read_events())

    async def start_sandbox(self, argv: list[str], workdir_bytes: int) -> None:
        """A fresh sandbox, with fresh /work and /tmp, its first zygote ready."""
        await self.stop_sandbox()
        # bwrap binds the topmost mount at a path: the bare anchors, for propagation.
        await asyncio.to_thread(self._unmount_scratch)
        self.sandbox = WarmSandbox(self.cgroup)
        await self.sandbox.start(self.launch, argv, self.seccomp_bpf)
        await asyncio.to_thread(self.reset_workdir, workdir_bytes)
        await asyncio.to_thread(self.reset_tmp)
        await self.sandbox.prepare(fresh_work=True)

    async def stop_sandbox(self) -> None:
        if self.sandbox is None:
            return
        sandbox, self.sandbox = self.sandbox, None
        await sandbox.close()
        await self.kill_run()
        # bwrap (the runner's run) goes with its init; the runner reaps it.
        with contextlib.suppress(SlotBroken):
            await asyncio.wait_for(self.wait_exit(), timeout=2.0)
        with contextlib.suppress(SlotBroken):
            self._send({"op": "kill"})
        await self.cgroup.kill_all(spare=self.runner_pid)

    async def recycle(self, workdir_bytes: int | None) -> None:
        """After a step: fresh /tmp (and /work when the job is over), next zygote ready."""
        assert self.sandbox is not None
        if workdir_bytes is not None:
            await asyncio.to_thread(self.reset_workdir, workdir_bytes)
        await asyncio.to_thread(self.reset_tmp)
        await self.sandbox.prepare(fresh_work=workdir_bytes is not None)

    def _unmount_scratch(self) -> None:
        for anchor in list(self.mounted):
            workdir.unmount(anchor)
            self.mounted.discard(anchor)

    async def _read_events(self) -> None:
        assert self.sock is not None
        await read_messages(self.sock, self.events, MAX_MESSAGE)
        self.broken = True
        await self.events.put({"ev": "gone"})

    def _send(self, message: dict[str, object], fds: list[int] | None = None) -> None:
        if self.sock is None:
            raise SlotBroken("runner not started")
        try:
            socket.send_fds(self.sock, [json.dumps(message).encode()], fds or [])
        except OSError as exc:
            raise SlotBroken(f"runner unreachable: {exc}") from exc

    def own_pids(self) -> set[int]:
        """The slot's own processes, no job's: the runner, bwrap and init in its home
        cgroup, and the zygote waiting in the run cgroup for the next step."""
        own = set(self.cgroup.home_pids())
        if self.sandbox is not None and self.sandbox.ready:
            own.add(self.sandbox.zygote_pid)
        return own

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None and bool(self.sock)

    async def launch(
        self, argv: list[str], rlimits: list[tuple[int, int, int]], fds: list[int], nice: int
    ) -> None:
        """Start bwrap as the slot's uid; returns once bwrap has been exec'd."""
        while not self.events.empty():  # stale events of a previous, failed sandbox
            self.events.get_nowait()
        self._send({"op": "run", "argv": argv, "rlimits": rlimits, "nice": nice}, fds)
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
        """Kill the run: every task of the run cgroup (init and bwrap are not in it)."""
        await self.cgroup.kill_all(spare=self.runner_pid)

    def reset_workdir(self, size_bytes: int) -> None:
        self._fresh_tmpfs(self.work_dir, size_bytes)
        self.workdir_bytes = size_bytes

    def reset_tmp(self) -> None:
        self._fresh_tmpfs(self.tmp_dir, TMP_BYTES)

    def _fresh_tmpfs(self, anchor: str, size_bytes: int) -> None:
        # Never unmount what is not ours to: with nothing over it, the topmost mount at
        # the path is the anchor itself.
        if anchor in self.mounted:
            workdir.unmount(anchor)
            self.mounted.discard(anchor)
        workdir.mount_tmpfs(anchor, size_bytes, self.uid, self.gid)
        self.mounted.add(anchor)

    async def close(self) -> None:
        if self.sandbox is not None:
            sandbox, self.sandbox = self.sandbox, None
            await sandbox.close()
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
        self.mounted.clear()
        for anchor in (self.work_dir, self.tmp_dir):
            with contextlib.suppress(OSError):
                workdir.unmount_all_under(anchor)
            with contextlib.suppress(OSError):
                os.rmdir(anchor)
