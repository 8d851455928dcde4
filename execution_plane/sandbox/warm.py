"""A slot's sandbox made ahead of time: one bubblewrap with init.py as its PID 1, reset
between runs instead of made anew for each.

The slot's runner starts bwrap (as the slot's uid, in the slot's home cgroup); the service
talks to init over a socket of its own. Before each run, init has a zygote waiting and the
service has moved it into the slot's run cgroup (a first cgroup join can wait 5-15 ms for
the kernel, so it is done while nothing waits on it); a run is that zygote exec'ing the
program. After a run the service sweeps the run cgroup (freeze, kill, thaw), mounts fresh
tmpfs over /tmp (and /work between jobs) from outside, and asks init to reap, clear SysV
IPC, check that /work and /tmp are the fresh mounts, and fork the next zygote. Whatever
fails or cannot be checked there ends the sandbox; the next step starts a fresh one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import resource
import socket

from execution_plane.sandbox.bwrap import SANDBOX_UID, WORK_DIR
from execution_plane.sandbox.cgroups import SlotCgroup
from execution_plane.sandbox.init import MAX_MESSAGE, TMP_DIR
from execution_plane.sandbox.socket_messages import read_messages

EVENT_SECONDS = 10.0  # how long init may take to answer (a cold python start included)
BWRAP_ERROR_BYTES = 4096


class SandboxFailed(Exception):
    """The sandbox could not be made, or a reset could not be done or checked."""


class StepNotStarted(Exception):
    """init could not start the program (exec failed): the program never ran."""


class WarmSandbox:
    def __init__(self, cgroup: SlotCgroup) -> None:
        self.cgroup = cgroup
        self.sock: socket.socket | None = None
        self.events: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.runs = 0
        self.language = ""  # the language whose toolchain it shows
        self.ready = False  # a zygote waits in the run cgroup
        self.zygote_pid = -1  # its host pid
        self.gone = False

    @property
    def alive(self) -> bool:
        return self.sock is not None and not self.gone

    async def start(self, launch: object, argv: list[str], seccomp_bpf: bytes) -> None:
        """`launch` is the slot's runner launch (argv, rlimits, fds, nice): it forks bwrap
        as the slot's uid and returns once bwrap is exec'd."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(err_r, False)
        try:
            # init gets no rlimits of the jobs: it must be able to give each run its own.
            rlimits = [(resource.RLIMIT_CORE, 0, 0)]
            await launch(argv, rlimits, [devnull, devnull, err_w, theirs.fileno()], 0)  # type: ignore[operator]
        finally:
            for fd in (devnull, err_w):
                os.close(fd)
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.reader = asyncio.create_task(self._read_events())
        try:
            hello = await self._event()
            if hello.get("ev") != "hello":
                raise SandboxFailed(f"init said {hello}")
        except SandboxFailed as exc:
            with contextlib.suppress(OSError):
                told = os.read(err_r, BWRAP_ERROR_BYTES).decode(errors="replace").strip()
                if told:
                    raise SandboxFailed(told.splitlines()[0]) from exc
            raise
        finally:
            os.close(err_r)
        self._send({"op": "init", "seccomp": base64.b64encode(seccomp_bpf).decode()})

    async def _read_events(self) -> None:
        assert self.sock is not None
        await read_messages(self.sock, self.events, MAX_MESSAGE)
        self.gone = True
        await self.events.put({"ev": "gone"})

    async def _event(self, within: float | None = EVENT_SECONDS) -> dict[str, object]:
        try:
            event = await asyncio.wait_for(self.events.get(), within)
        except TimeoutError as exc:
            raise SandboxFailed("init did not answer") from exc
        if event.get("ev") == "gone":
            self.events.put_nowait(event)  # every later wait sees it too
            raise SandboxFailed("the sandbox's init is gone")
        return event

    def _send(self, message: dict[str, object], fds: list[int] | None = None) -> None:
        if self.sock is None or self.gone:
            raise SandboxFailed("the sandbox's init is gone")
        try:
            socket.send_fds(self.sock, [json.dumps(message).encode()], fds or [])
        except OSError as exc:
            raise SandboxFailed(f"init unreachable: {exc}") from exc

    async def prepare(self, fresh_work: bool) -> None:
        """After the service swept the run cgroup and mounted fresh /tmp (and /work): init
        reaps, clears, checks, forks the zygote; the zygote joins the run cgroup."""
        self.ready = False
        fresh = [TMP_DIR, WORK_DIR] if fresh_work else [TMP_DIR]
        self._send({"op": "prepare", "uid": SANDBOX_UID, "fresh": fresh})
        event = await self._event()
        if event.get("ev") != "ready":
            raise SandboxFailed(str(event.get("detail", event)))
        host_pid = self._host_pid(int(event["zygote"]))  # type: ignore[call-overload]
        await asyncio.to_thread(self.cgroup.attach, host_pid)
        if self.cgroup.pids() != [host_pid]:
            raise SandboxFailed(f"the run cgroup holds {self.cgroup.pids()}, not the zygote")
        self.zygote_pid = host_pid
        self.ready = True

    def _host_pid(self, ns_pid: int) -> int:
        """The zygote's pid on the host: the process of the slot's home cgroup whose pid in
        the sandbox's namespace (the last of its NSpid) is the one init named."""
        for pid in self.cgroup.home_pids():
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("NSpid:"):
                            levels = [int(p) for p in line.split()[1:]]
                            if len(levels) >= 2 and levels[-1] == ns_pid:
                                return pid
                            break
        raise SandboxFailed(f"the zygote (pid {ns_pid} in the sandbox) is not in the slot")

    async def launch(
        self,
        argv: list[str],
        env: dict[str, str],
        rlimits: list[tuple[int, int, int]],
        nice: int,
        fds: list[int],
    ) -> None:
        """Start the program in the waiting zygote; returns once it is exec'd."""
        if not self.ready:
            raise SandboxFailed("no zygote prepared")
        self.ready = False
        self.runs += 1
        self._send({"op": "run", "argv": argv, "env": env, "rlimits": rlimits, "nice": nice}, fds)
        event = await self._event()
        if event.get("ev") == "error":
            raise StepNotStarted(str(event.get("detail", "")))
        if event.get("ev") != "started":
            raise SandboxFailed(f"init said {event}")

    async def wait_exit(self) -> tuple[int, int]:
        """(the program's wait status, its code as bwrap's status fd gives it)."""
        event = await self._event(within=None)
        if event.get("ev") != "exited":
            raise SandboxFailed(f"init said {event}")
        return int(event["status"]), int(event["code"])  # type: ignore[call-overload]

    async def close(self) -> None:
        """EOF on its socket ends init, and with PID 1 the whole namespace."""
        self.gone = True
        if self.reader:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.sock:
            self.sock.close()
            self.sock = None
