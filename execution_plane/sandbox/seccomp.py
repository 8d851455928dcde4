"""The seccomp filter every sandboxed program runs under, compiled to BPF with libseccomp.

A deny list, not an allow list: the namespaces, the unprivileged uid and the dropped
capabilities already refuse most of the kernel's dangerous surface; the filter closes what
they leave open to an unprivileged user inside a user namespace (ptrace of the sandbox's
pid 1, new namespaces, netlink and inet sockets, bpf, keyrings, io_uring, terminal
injection). Runtimes (the JVM, node, go) use a wide and changing set of ordinary syscalls,
which an allow list would break with every toolchain update.
"""

from __future__ import annotations

import errno
import tempfile

import pyseccomp as sc

# Refused with EPERM: these touch other processes, the kernel, or mount/namespace state.
DENIED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "uselib",
    "ustat",
    "sysfs",
    "nfsservctl",
    "fanotify_init",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
)

# clone() flags that would create a namespace; the flags are a plain argument, so they can
# be checked (clone3 passes them in memory, out of a filter's reach: it gets ENOSYS and
# glibc falls back to clone).
CLONE_NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
    | 0x00000080  # CLONE_NEWTIME
)

AF_UNIX = 1
TIOCSTI = 0x5412
TIOCLINUX = 0x541C


def _add(filt: sc.SyscallFilter, action: int, name: str, *args: sc.Arg) -> None:
    try:
        filt.add_rule(action, name, *args)
    except (OSError, RuntimeError, ValueError):
        # A syscall this libseccomp or architecture does not know cannot be called either.
        pass


def build_filter() -> sc.SyscallFilter:
    filt = sc.SyscallFilter(defaction=sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        _add(filt, eperm, name)
    _add(filt, sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _single_bits(CLONE_NAMESPACE_FLAGS):
        _add(filt, eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    _add(filt, eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    _add(filt, eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCLINUX))
    # Only local (AF_UNIX) sockets: no inet (the network namespace is empty anyway), no
    # netlink, no packet sockets, no vsock.
    _add(filt, sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.NE, AF_UNIX))
    _add(filt, sc.ERRNO(errno.EAFNOSUPPORT), "socketpair", sc.Arg(0, sc.NE, AF_UNIX))
    return filt


def _single_bits(mask: int) -> list[int]:
    return [1 << bit for bit in range(64) if mask & (1 << bit)]


def compile_bpf() -> bytes:
    """The filter as the raw BPF program bwrap's --seccomp reads."""
    with tempfile.TemporaryFile() as f:
        build_filter().export_bpf(f)
        f.seek(0)
        return f.read()
