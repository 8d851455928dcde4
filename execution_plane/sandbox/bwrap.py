"""The bubblewrap command line of one sandboxed step.

bwrap (the tool Flatpak is built on) sets up the namespaces and mounts; we only choose
what the sandbox sees. It is started as the slot's unprivileged host uid, so the user
namespace it creates maps to that uid and the job holds no capability on the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from execution_plane.languages import Language, Registry

SANDBOX_UID = 1000  # the uid the program sees; it maps to the slot's unprivileged host uid
SANDBOX_GID = 1000
WORK_DIR = "/work"
TMP_BYTES = 16 * 1024 * 1024  # a step's /tmp
# The sandbox's init runs on the python language's interpreter, mounted with its paths.
INIT_LANGUAGE = "python"
INIT_INTERPRETER = "/usr/bin/python3"
INIT_PATH = "/.sluice-init.py"  # where the sandbox sees init.py


def find_bwrap() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/usr/local/bin:/bin")


def bwrap_problem(bwrap: str) -> str:
    """Why this bwrap cannot run the sandbox, or "" (it must have every option we use)."""
    try:
        shown = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{bwrap} --help failed: {exc}"
    for option in ("--as-pid-1", "--disable-userns"):
        if option not in shown.stdout + shown.stderr:
            return f"{bwrap} has no {option} (bubblewrap 0.8 or newer is needed)"
    return ""


def run_env(registry: Registry, language: Language) -> dict[str, str]:
    """The whole environment of a sandboxed program: nothing of the host's."""
    env = {"PATH": registry.path_env, "HOME": WORK_DIR, "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
    env.update(language.env)
    return env


def sandbox_argv(
    bwrap: str,
    registry: Registry,
    languages: list[Language],
    staged: dict[str, str],
    work_anchor: str,
    tmp_anchor: str,
    init_script: str,
    interpreter: list[str],
) -> list[str]:
    """A slot's sandbox: the languages' toolchains read-only (a job's and the init's
    interpreter), /work and /tmp bound from the slot's anchors, and init.py as PID 1.

    The anchors are shared bind mounts of empty directories root owns. The service mounts
    a fresh tmpfs on each for every job (and /tmp for every step); mount propagation puts
    it over /work and /tmp here. So bwrap must bind the anchors while nothing is mounted on
    them (it binds whatever is topmost): see warm.py.
    """
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--hostname",
        "sandbox",
        # No --seccomp: init installs the filter on each run itself (init.py), so a job
        # runs under exactly one copy of it, as a job in a fresh bwrap did.
        "--clearenv",
    ]
    # Parents first; a path already shown through its parent's bind (the same host path:
    # bash's whole /usr/bin holds gcc's /usr/bin/gcc) is not bound again, as bwrap could
    # not create its mount point inside a read-only bind.
    mounts = sorted(
        {
            m.dest: m
            for m in (*registry.base_mounts, *(m for lang in languages for m in lang.mounts))
        }.values(),
        key=lambda m: m.dest.count("/"),
    )
    identity: list[str] = []

    def shown(path: str) -> bool:
        return any(path.startswith(parent + "/") for parent in identity)

    for mount in mounts:
        if mount.source == mount.dest and shown(mount.dest):
            # Already there through its parent. A symlink there (/usr/bin/cc ->
            # /etc/alternatives/cc -> /usr/bin/gcc) may lead out of it: the hops outside
            # are made the same symlinks, so a compiler still finds its own install dir.
            path = mount.source
            for _ in range(40):  # the kernel's own limit on symlink hops
                if not os.path.islink(path):
                    if not shown(path) and path not in identity:
                        argv += ["--ro-bind", path, path]
                        identity.append(path)
                    break
                target = os.readlink(path)
                if not shown(path) and path not in identity:
                    argv += ["--symlink", target, path]
                    identity.append(path)
                path = os.path.normpath(os.path.join(os.path.dirname(path), target))
            continue
        source = staged[mount.source] if mount.private else mount.source
        if source == mount.dest:
            identity.append(mount.dest)
        argv += ["--ro-bind", source, mount.dest]
    argv += [
        # Debian's merged /usr: scripts and the ELF interpreter still use the old paths.
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dir",
        "/dev",
        "--dev-bind",
        "/dev/null",
        "/dev/null",
        "--dev-bind",
        "/dev/zero",
        "/dev/zero",
        "--dev-bind",
        "/dev/urandom",
        "/dev/urandom",
        "--symlink",
        "/proc/self/fd",
        "/dev/fd",
        "--symlink",
        "/proc/self/fd/0",
        "/dev/stdin",
        "--symlink",
        "/proc/self/fd/1",
        "/dev/stdout",
        "--symlink",
        "/proc/self/fd/2",
        "/dev/stderr",
        "--ro-bind",
        tmp_anchor,
        "/tmp",
        "--ro-bind",
        work_anchor,
        WORK_DIR,
        "--ro-bind",
        init_script,
        INIT_PATH,
        "--chdir",
        "/",
        "--remount-ro",
        "/",
        "--",
        *interpreter,
        INIT_PATH,
    ]
    return argv
