"""The seccomp filter every sandboxed program runs under, compiled to BPF with libseccomp.

A deny list, not an allow list: the namespaces, the unprivileged uid and the dropped
capabilities already refuse most of the kernel's dangerous surface; the filter closes what
they leave open to an unprivileged user inside a user namespace (ptrace of the sandbox's
pid 1, new namespaces, netlink and inet sockets, bpf, keyrings, io_uring, terminal
injection). Runtimes (the JVM, node, go) use a wide and changing set of ordinary syscalls,
which an allow list would break with every toolchain update.

It fails closed all the same: a name the installed libseccomp cannot resolve (and the
table below does not give) stops the sandbox from starting instead of being skipped, and
syscalls newer than the ones this list was written against are refused (ENOSYS).
"""

from __future__ import annotations

import errno
import struct
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
    # The LDT: only 16-bit and Wine code needs one, and it has been a door into the kernel.
    "modify_ldt",
    # NUMA memory policy and page migration: they move memory between the host's nodes,
    # and move_pages/migrate_pages name other processes. get_mempolicy only reads.
    "mbind",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "migrate_pages",
    "move_pages",
    # Advice on another process's memory, through a pidfd.
    "process_madvise",
    # quotactl by file descriptor: denied like quotactl above.
    "quotactl_fd",
    # Splices user pages into a pipe: no program needs it, and it was Dirty Pipe's way in.
    "vmsplice",
    # The newer mount API's readers and cloners: what the host mounts, and where.
    "open_tree_attr",
    "statmount",
    "listmount",
    # Changing its own LSM label; reading it (lsm_get_self_attr, lsm_list_modules) is what
    # /proc/self/attr shows anyway.
    "lsm_set_self_attr",
)

# Syscall numbers on x86_64 that an older libseccomp may not know by name (2.5.4, Debian
# 12's, stops at 456). From the kernel's arch/x86/entry/syscalls/syscall_64.tbl.
X86_64_SYSCALLS = {
    "statmount": 457,
    "listmount": 458,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
    "mseal": 462,
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
    "open_tree_attr": 467,
    "file_getattr": 468,
    "file_setattr": 469,
}
# The highest x86_64 syscall this list was written against (file_setattr, Linux 6.17).
# The ones since clone3 (435) were looked at one by one: denied above, or allowed because
# they act on the caller's own fds, memory and restrictions or on files it may already
# reach (close_range, openat2, faccessat2, epoll_pwait2, landlock_*, memfd_secret,
# process_mrelease of a pidfd it holds, futex_waitv and the futex2 calls, cachestat,
# fchmodat2, map_shadow_stack, mseal, the *xattrat calls, file_getattr/file_setattr,
# lsm_get_self_attr, lsm_list_modules). Anything above is newer than this review and gets
# ENOSYS, what a kernel without it says, so runtimes fall back as they do there.
LAST_REVIEWED_SYSCALL = 469

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
INIT_PID = 1  # the sandbox's init, in its pid namespace (init.py)
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
PER_LINUX = 0

AUDIT_ARCH_X86_64 = 0xC000003E
# struct seccomp_data: int nr; __u32 arch; ...
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGT_K = 0x25
BPF_RET_K = 0x06
SECCOMP_RET_ERRNO = 0x00050000


class SeccompError(Exception):
    """The filter cannot be built as written: the sandbox must not start without it."""


def syscall_number(name: str) -> int:
    """The native number of a syscall; an error, never a skip, if it cannot be found."""
    number = sc.resolve_syscall(sc.Arch.NATIVE, name)
    if number >= 0:
        return number
    # Negative: libseccomp does not know the name (-1), or knows it as absent on this
    # architecture (a pseudo number below -1).
    if number == -1 and sc.system_arch() == sc.Arch.X86_64 and name in X86_64_SYSCALLS:
        return X86_64_SYSCALLS[name]
    raise SeccompError(
        f"seccomp: syscall {name!r} is unknown to the installed libseccomp on this "
        "architecture; the filter would not hold what it says"
    )


def _add(filt: sc.SyscallFilter, action: int, name: str, *args: sc.Arg) -> None:
    try:
        filt.add_rule(action, syscall_number(name), *args)
    except OSError as exc:
        raise SeccompError(f"seccomp: cannot add a rule for {name!r}: {exc}") from exc


def build_filter() -> sc.SyscallFilter:
    filt = sc.SyscallFilter(defaction=sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        _add(filt, eperm, name)
    # Only the default persona: no ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, UNAME26 and the
    # like. None of the toolchains calls personality at all (strace'd); even the query
    # form (0xffffffff) is refused, which costs a program nothing it could use.
    _add(filt, eperm, "personality", sc.Arg(0, sc.NE, PER_LINUX))
    # The sandbox's init is pid 1 of the namespace and runs as the job's uid: no job may
    # lower its rlimits (and so every later run's), nor its priority or its CPUs. prlimit
    # reaches any pid; the job's own limits go through pid 0 (glibc's setrlimit does).
    _add(filt, eperm, "prlimit64", sc.Arg(0, sc.NE, 0))
    for name in ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr"):
        _add(filt, eperm, name, sc.Arg(0, sc.EQ, INIT_PID))
    _add(filt, eperm, "setpriority", sc.Arg(1, sc.EQ, INIT_PID))
    _add(filt, eperm, "ioprio_set", sc.Arg(1, sc.EQ, INIT_PID))
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


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def newer_syscalls_prologue(last_reviewed: int = LAST_REVIEWED_SYSCALL) -> bytes:
    """BPF run before libseccomp's program: x86_64 syscalls above `last_reviewed` get
    ENOSYS. libseccomp matches numbers one by one and has no "above" rule; classic BPF jumps
    are relative, so the two programs join by plain concatenation."""
    return b"".join(
        [
            _insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
            # Not x86_64 (i386 through int 0x80): libseccomp's program refuses it.
            _insn(BPF_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
            _insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
            # Also catches x32 (its numbers carry bit 30).
            _insn(BPF_JGT_K, 0, 1, last_reviewed),
            _insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
        ]
    )


def compile_bpf(last_reviewed: int = LAST_REVIEWED_SYSCALL) -> bytes:
    """The filter as the raw BPF program bwrap's --seccomp reads."""
    if sc.system_arch() != sc.Arch.X86_64:
        raise SeccompError("seccomp: the filter is written for x86_64 only")
    with tempfile.TemporaryFile() as f:
        build_filter().export_bpf(f)
        f.seek(0)
        return newer_syscalls_prologue(last_reviewed) + f.read()
