"""The per-slot runner: a small root process that forks every sandboxed run of one slot.

Why a separate process: the service must never run user code, and forking bwrap from a
process that already sits in the slot's cgroups saves the 7-10 ms a fresh cgroup join costs
(cgroup v1 takes a global rwsem that waits for an RCU grace period). The runner is also the
child subreaper of its runs, so bwrap's pid 1 never lingers as a zombie that holds a pids
charge against the slot.

It is started as `python -I -S runner.py SOCK_FD UID GID BWRAP` and imports only the
standard library, so it starts in milliseconds and nothing of the service leaks into it.

Protocol (SOCK_SEQPACKET, one JSON object per message):
  service -> runner  {"op": "run", "argv": [...], "rlimits": [[res, soft, hard], ...],
                      "nice": N}  with SCM_RIGHTS fds [stdin, stdout, stderr, control]
                     {"op": "kill"}     SIGKILL the current run's bwrap, if not yet reaped
  runner -> service  {"ev": "started", "pid": N}
                     {"ev": "exited", "pid": N, "status": S, "cpu_ns": C, "maxrss": B}
                     {"ev": "error", "detail": "..."}
In the child the fds are 0, 1, 2 and the ones after follow from 3 on (the sandbox init's
control socket).
The run it starts is a slot's sandbox (warm.py), which lives for many job steps.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import resource
import select
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
JOB_NICE = 19  # the lowest CPU priority short of SCHED_IDLE
MAX_MESSAGE = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Runner:
    def __init__(self, sock: socket.socket, uid: int, gid: int, bwrap: str) -> None:
        self.sock = sock
        self.uid = uid
        self.gid = gid
        self.bwrap = bwrap
        self.current: int | None = None  # pid of the running bwrap, until reaped
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def send(self, message: dict[str, object]) -> None:
        self.sock.send(json.dumps(message).encode())

    def serve(self) -> None:
        while True:
            readable, _, _ = select.select([self.sock, self.wake_r], [], [])
            if self.wake_r in readable:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
                self.reap()
            if self.sock in readable:
                try:
                    data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 8)
                except InterruptedError:
                    continue
                if not data:
                    return  # the service closed the slot (or died)
                try:
                    self.handle(json.loads(data), fds)
                finally:
                    for fd in fds:
                        os.close(fd)

    def handle(self, message: dict[str, object], fds: list[int]) -> None:
        op = message.get("op")
        if op == "run":
            self.start(message, fds)
        elif op == "kill":
            if self.current is not None:
                try:
                    os.kill(self.current, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def shut_down(self) -> None:
        """Kill the current run and reap every child, so no zombie outlives the runner."""
        if self.current is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.current, signal.SIGKILL)
        while True:
            try:
                os.wait4(-1, 0)
            except ChildProcessError:
                return
            except InterruptedError:
                continue

    def reap(self) -> None:
        # As subreaper we inherit whatever a killed bwrap leaves behind; reap it all.
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.current:
                self.current = None
                cpu_ns = int((usage.ru_utime + usage.ru_stime) * 1e9)
                self.send(
                    {
                        "ev": "exited",
                        "pid": pid,
                        "status": status,
                        "cpu_ns": cpu_ns,
                        "maxrss": usage.ru_maxrss * 1024,
                    }
                )

    def start(self, message: dict[str, object], fds: list[int]) -> None:
        if self.current is not None or len(fds) < 3:
            self.send({"ev": "error", "detail": "runner: bad run request"})
            return
        argv = [str(a) for a in message["argv"]]  # type: ignore[union-attr]
        rlimits = [tuple(int(x) for x in r) for r in message["rlimits"]]  # type: ignore[union-attr]
        nice = int(message.get("nice", JOB_NICE))  # type: ignore[call-overload]
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        runner_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(err_r)
                # Park the error pipe high so the dup2 calls cannot land on it.
                err_w = fcntl.fcntl(err_w, fcntl.F_DUPFD_CLOEXEC, 100)
                self.exec_child(argv, rlimits, nice, fds, err_w, runner_pid)
            except BaseException as exc:  # the child must never return into the runner's loop
                try:
                    os.write(err_w, f"runner child: {exc}".encode()[:512])
                finally:
                    os._exit(127)
        os.close(err_w)
        failure = b""
        while True:  # EOF means execve succeeded (the pipe is close-on-exec)
            try:
                chunk = os.read(err_r, 512)
            except InterruptedError:
                continue
            if not chunk:
                break
            failure += chunk
        os.close(err_r)
        if failure:
            # The child is exiting on its own, right now: reap it here so no stray "exited"
            # event follows the error.
            while True:
                try:
                    os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
            self.send({"ev": "error", "detail": failure.decode(errors="replace")})
            return
        self.current = pid
        self.send({"ev": "started", "pid": pid})

    def exec_child(
        self,
        argv: list[str],
        rlimits: list[tuple[int, ...]],
        nice: int,
        fds: list[int],
        err_w: int,
        runner_pid: int,
    ) -> None:
        signal.set_wakeup_fd(-1)
        # execve resets every caught signal (the runner's SIGCHLD) to its default; ignored
        # ones stay ignored: Python ignores these two at start-up.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        # The job, not the runner, is what an OOM in the slot's cgroup must kill (and the
        # runner's -1000, when it could be set, must not be inherited). Plain fds: the
        # child runs as little Python as it can between fork and exec.
        adj = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        os.write(adj, b"1000")
        os.close(adj)
        # Move everything above the target numbers first so dup2 cannot clobber a source.
        ordered = list(fds)
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 128) for fd in ordered]
        for target, fd in enumerate(moved):
            os.dup2(fd, target, inheritable=True)
        os.closerange(len(ordered), err_w)
        os.closerange(err_w + 1, 65536)
        for res, soft, hard in rlimits:
            resource.setrlimit(res, (soft, hard))
        os.umask(0o022)
        # Untrusted jobs yield the CPU to the platform's own processes (the worker's
        # heartbeats and output, and on a shared host the API): jobs spinning on every
        # core must not slow SubmitJob. Jobs stay equal among themselves, and with
        # RLIMIT_NICE 0 they cannot raise their priority back.
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
        os.setgroups([])
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)
        # After the uid change, which clears it: bwrap dies with the runner, and its
        # sandbox with it (--die-with-parent).
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != runner_pid:
            os._exit(127)  # the runner died before the line above
        os.execve(self.bwrap, argv, {})


def main() -> None:
    sock_fd, uid, gid, bwrap = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    sock = socket.socket(fileno=sock_fd)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    # If the service dies, so does the runner (and, through PDEATHSIG, its runs).
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    runner = Runner(sock, uid, gid, bwrap)
    try:
        runner.serve()
    except OSError as exc:
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
            raise
    finally:
        # However the service went away, nothing the runner started may be left behind,
        # not even as a zombie: whatever init adopts it might never reap it.
        runner.shut_down()


if __name__ == "__main__":
    main()
