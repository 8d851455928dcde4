"""The bubblewrap command line of one sandboxed step.

bwrap (the tool Flatpak is built on) sets up the namespaces and mounts; we only choose
what the sandbox sees. It is started as the slot's unprivileged host uid, so the user
namespace it creates maps to that uid and the job holds no capability on the host.
"""

from __future__ import annotations

import shutil
import subprocess

from execution_plane.languages import Language, Registry

SANDBOX_UID = 1000  # the uid the program sees; it maps to the slot's unprivileged host uid
SANDBOX_GID = 1000
WORK_DIR = "/work"
SECCOMP_FD = 3  # where the runner puts the seccomp program in the child
# Where bwrap reports on itself (--json-status-fd), apart from anything the program writes:
# an "exit-code" line comes only once bwrap has set the sandbox up and exec'd the program.
STATUS_FD = 4
TMP_BYTES = 16 * 1024 * 1024


def find_bwrap() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/usr/local/bin:/bin")


def bwrap_problem(bwrap: str) -> str:
    """Why this bwrap cannot run the sandbox, or "" (it must report on a channel of its own)."""
    try:
        shown = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{bwrap} --help failed: {exc}"
    if "--json-status-fd" not in shown.stdout + shown.stderr:
        return f"{bwrap} has no --json-status-fd (bubblewrap 0.5 or newer is needed)"
    return ""


def bwrap_argv(
    bwrap: str,
    registry: Registry,
    language: Language,
    host_work_dir: str,
    command: list[str],
    staged: dict[str, str],
) -> list[str]:
    """`staged` maps each private toolchain dir to where the pool made it reachable."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--hostname",
        "sandbox",
        "--seccomp",
        str(SECCOMP_FD),
        "--json-status-fd",
        str(STATUS_FD),
        "--clearenv",
        "--setenv",
        "PATH",
        registry.path_env,
        "--setenv",
        "HOME",
        WORK_DIR,
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--setenv",
        "TMPDIR",
        "/tmp",
    ]
    for key, value in language.env:
        argv += ["--setenv", key, value]
    for mount in (*registry.base_mounts, *language.mounts):
        source = staged[mount.source] if mount.private else mount.source
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
        "--size",
        str(TMP_BYTES),
        "--tmpfs",
        "/tmp",
        "--bind",
        host_work_dir,
        WORK_DIR,
        "--chdir",
        WORK_DIR,
        "--remount-ro",
        "/",
        "--",
        *command,
    ]
    return argv
