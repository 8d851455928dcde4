"""The init of a sandbox made ahead of time: PID 1 of its pid namespace, inside bubblewrap.

It runs as `python3 -I -S init.py` under bwrap (`--as-pid-1`), as the sandbox's
unprivileged uid with no capability, and imports only the standard library (it reads
nothing a job could have written). The seccomp filter is not on init: each run's zygote
installs it just before exec, so a job runs under exactly one copy of it.

Every step of a job runs here: init keeps one forked child waiting (the zygote), made for
the next run alone, with the seccomp filter already installed on it; the service moves it
into the slot's run cgroup while nothing runs, and a step is that zygote applying the
step's rlimits, nice and environment and exec'ing the program. A run costs a fork and an
exec.

Why a job cannot reach init: init is PID 1 of the namespace and installs no signal handler,
so the kernel drops every signal a process of the namespace sends it (SIGKILL and SIGSTOP
included); it is not dumpable, so its /proc files belong to the namespace's (unmapped)
root and ptrace needs a capability nobody in the sandbox has (the filter refuses ptrace
too); its control socket is closed in the zygote before anything runs; it lives in a cgroup
apart from the run's, so the sweep that kills a run never touches it.

Protocol (SOCK_SEQPACKET on fd 3, one JSON object per message):
  service -> init  {"op": "init", "seccomp": <base64 BPF>}
                   {"op": "prepare", "uid": U, "fresh": [paths]}  reap, clear SysV IPC,
                       check /work and /tmp are the service's tmpfs (owned by U) and the
                       `fresh` ones empty, fork the next zygote
                   {"op": "run", "argv": [...], "env": {...}, "rlimits": [[r, soft, hard]],
                    "nice": N}  with SCM_RIGHTS fds [stdin, stdout, stderr]
  init -> service  {"ev": "hello"}  {"ev": "ready", "zygote": NSPID}
                   {"ev": "started"}  {"ev": "exited", "code": C, "status": S}
                   {"ev": "error", "detail": "..."}
`code` is a program's exit code, or 128+N when signal N killed it (as bwrap reports one).
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
import time

CONTROL_FD = 3  # after stdin, stdout and stderr (runner.py puts it there)
MAX_MESSAGE = 1 << 20
WORK_DIR = "/work"
TMP_DIR = "/tmp"
REAP_POLL_SECONDS = 0.05  # orphans a run leaves to init are reaped this often while it runs
REAP_WITHIN_SECONDS = 2.0
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_SET_DUMPABLE = 4
SECCOMP_MODE_FILTER = 2
IPC_RMID = 0
ZYGOTE_READY = b"r"
SYSV_IPC = {"shm": "shmctl", "msg": "msgctl", "sem": "semctl"}

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _install_seccomp(bpf: bytes) -> None:
    program = ctypes.create_string_buffer(bpf, len(bpf))
    fprog = _SockFprog(len(bpf) // 8, ctypes.addressof(program))
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def _code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


class Init:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.seccomp = b""
        self.zygote: int | None = None
        self.zygote_sock: socket.socket | None = None
        self.program: int | None = None  # pid of the running program until reaped
        self.pidfd: int | None = None

    def send(self, message: dict[str, object]) -> None:
        self.control.send(json.dumps(message).encode())

    def serve(self) -> None:
        self.send({"ev": "hello"})
        while True:
            watched: list[object] = [self.control]
            if self.pidfd is not None:
                watched.append(self.pidfd)
            readable, _, _ = select.select(
                watched, [], [], REAP_POLL_SECONDS if self.program else None
            )
            self.reap_orphans()
            if self.control in readable:
                data, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 4)
                if not data:
                    return  # the service closed the sandbox
                try:
                    self.handle(json.loads(data), fds)
                except Exception as exc:  # init reports its failures; the service destroys it
                    self.send({"ev": "error", "detail": f"init: {type(exc).__name__}: {exc}"})
                finally:
                    for fd in fds:
                        os.close(fd)

    def handle(self, message: dict[str, object], fds: list[int]) -> None:
        op = message.get("op")
        if op == "init":
            self.seccomp = base64.b64decode(str(message["seccomp"]))
        elif op == "prepare":
            fresh = [str(path) for path in message["fresh"]]  # type: ignore[attr-defined]
            self.prepare(int(message["uid"]), fresh)  # type: ignore[call-overload]
        elif op == "run":
            self.run(message, fds)
        else:
            raise ValueError(f"unknown op {op!r}")

    # -- between runs --------------------------------------------------------------------

    def reap_orphans(self) -> None:
        """Reap whatever has exited: orphans of a run are re-parented to init."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.program:
                self.finish(status)
            elif pid == self.zygote:
                self.zygote = None

    def finish(self, status: int) -> None:
        self.program = None
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self.send({"ev": "exited", "code": _code(status), "status": status})

    def prepare(self, uid: int, fresh: list[str]) -> None:
        if self.program is not None or self.zygote is not None:
            raise RuntimeError("prepare while a run or a zygote is alive")
        # The service killed the run's cgroup: every child of init is dead or dying.
        deadline = time.monotonic() + REAP_WITHIN_SECONDS
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("a child of init outlived the run")
                time.sleep(0.001)
        self.clear_sysv_ipc()
        for path in (WORK_DIR, TMP_DIR):
            info = os.stat(path)
            # A fresh tmpfs the service mounted for the slot's uid: owned by it here.
            # Anything else (the bare mount point under it, which root owns) fails.
            if info.st_uid != uid or (path in fresh and os.listdir(path)):
                raise RuntimeError(f"{path} is not a fresh, empty directory of the sandbox")
        self.fork_zygote()
        self.send({"ev": "ready", "zygote": self.zygote})

    def clear_sysv_ipc(self) -> None:
        """SysV IPC objects outlive their processes; the pooled IPC namespace must not."""
        for kind, call in SYSV_IPC.items():
            for line in self.sysv_lines(kind):
                ident = int(line.split()[1])
                if call == "semctl":
                    _libc.semctl(ident, 0, IPC_RMID)
                else:
                    _libc[call](ident, IPC_RMID, None)
            if self.sysv_lines(kind):
                raise RuntimeError(f"SysV {kind} objects survive removal")

    @staticmethod
    def sysv_lines(kind: str) -> list[str]:
        with open(f"/proc/sysvipc/{kind}") as listing:
            return [line for line in listing.read().splitlines()[1:] if line.strip()]

    def fork_zygote(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                self.control.close()  # nothing a job runs may hold init's channel
                _zygote(theirs, self.seccomp)
            finally:
                os._exit(127)
        theirs.close()
        self.zygote = pid
        self.zygote_sock = ours
        # The zygote sets itself up while the service moves it into the run cgroup; its
        # word that the filter is on is read before it is given a run (see run()).

    # -- a run ---------------------------------------------------------------------------

    def run(self, message: dict[str, object], fds: list[int]) -> None:
        if self.zygote is None or self.zygote_sock is None or len(fds) != 3:
            raise RuntimeError("run without a prepared zygote")
        zygote, sock = self.zygote, self.zygote_sock
        self.zygote, self.zygote_sock = None, None
        # Filtered, or it never runs anything.
        if sock.recv(len(ZYGOTE_READY)) != ZYGOTE_READY:
            sock.close()
            raise RuntimeError("the zygote could not install the seccomp filter")
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            socket.send_fds(sock, [json.dumps(message).encode()], [*fds, err_w])
        finally:
            os.close(err_w)
            sock.close()
        failure = b""
        while chunk := os.read(err_r, 512):  # EOF: exec succeeded (the pipe is close-on-exec)
            failure += chunk
        os.close(err_r)
        if failure:
            os.waitpid(zygote, 0)
            self.send({"ev": "error", "detail": failure.decode(errors="replace")})
            return
        self.program = zygote
        self.pidfd = os.pidfd_open(zygote)
        self.send({"ev": "started"})
        # It may have exited already; the pidfd turns readable then, and the loop reaps it.


def _zygote(sock: socket.socket, seccomp: bytes) -> None:
    """The next run's process: installs its filter, waits for its step, sets it up, becomes
    the program."""
    for number in range(1, signal.NSIG):
        try:
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            continue
    # The filter is this run's own, installed afresh in a process made for this run alone,
    # before it waits: off the run's path. Nothing below needs a call it refuses.
    _install_seccomp(seccomp)
    sock.send(ZYGOTE_READY)
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
    if len(fds) != 4:
        os._exit(127)
    *stdio, err_w = fds
    try:
        message = json.loads(data)
        err_w = os.dup2(err_w, 100, inheritable=False)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target, inheritable=True)
        os.closerange(3, 100)
        os.closerange(101, 65536)
        os.chdir(WORK_DIR)
        os.umask(0o022)
        # Rlimits, priority, environment and filter afresh for every run: nothing a job set
        # on itself survives into the next, which starts from init's and these.
        os.setpriority(os.PRIO_PROCESS, 0, int(message["nice"]))
        for res, soft, hard in message["rlimits"]:
            resource.setrlimit(res, (soft, hard))
        resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
        # oom_score_adj is 1000 already (the runner set it for bwrap, and it is inherited);
        # an OOM of the run cgroup picks among the run's tasks only, never init.
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        argv = [str(a) for a in message["argv"]]
        # execvpe as bwrap's execvp: a command without a slash is looked up on the PATH.
        os.execvpe(argv[0], argv, {str(k): str(v) for k, v in message["env"].items()})
    except BaseException as exc:  # reported, then this process ends
        os.write(err_w, f"init: cannot start {exc}".encode()[:512])
        os._exit(127)


def main() -> None:
    # Python installs a SIGINT handler: with one, the kernel would deliver SIGINT from the
    # namespace to init. Every signal stays at its default (or ignored), so none arrives.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")
    if os.getpid() != 1:
        sys.exit("init must be pid 1 of the sandbox's pid namespace")
    control = socket.socket(fileno=CONTROL_FD)
    Init(control).serve()


if __name__ == "__main__":
    main()
