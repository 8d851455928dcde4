"""The seccomp filter fails closed: the newly denied syscalls, syscalls newer than the
reviewed list, and a list the installed libseccomp cannot fully resolve."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from execution_plane.sandbox import SandboxPool, SandboxUnavailable, seccomp
from tests.sandbox.harness import assert_host_untouched

# x86_64 numbers, so the program needs no libseccomp of its own.
NEWLY_DENIED = {
    "personality ADDR_NO_RANDOMIZE": (135, 0x0040000),
    "personality READ_IMPLIES_EXEC": (135, 0x0400000),
    "personality query": (135, 0xFFFFFFFF),
    "modify_ldt": (154, 0, 0, 0),
    "mbind": (237, 0, 0, 0, 0, 0, 0),
    "set_mempolicy": (238, 0, 0, 0),
    "migrate_pages": (256, 0, 0, 0, 0),
    "move_pages": (279, 0, 0, 0, 0, 0, 0),
    "vmsplice": (278, 0, 0, 0, 0),
    "process_madvise": (440, 0, 0, 0, 0, 0),
    "quotactl_fd": (443, 0, 0, 0, 0),
    "set_mempolicy_home_node": (450, 0, 0, 0, 0),
    "statmount": (457, 0, 0, 0, 0),
    "listmount": (458, 0, 0, 0, 0),
    "lsm_set_self_attr": (460, 0, 0, 0, 0),
    "open_tree_attr": (467, 0, 0, 0, 0, 0),
}
NEWER_THAN_THE_LIST = {
    "470": (470,),
    "511": (511,),
    "100000": (100_000,),
    "x32 getpid": (0x40000000 | 39,),
}

PROBE = r"""
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(number, *args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_ulong(a) for a in args))
    return 'OK' if result != -1 else errno.errorcode[ctypes.get_errno()]
calls = json.loads(sys.argv[1])
print(json.dumps({name: call(*numbers) for name, numbers in calls.items()}))
"""


async def test_the_newly_denied_syscalls_are_refused(pool: SandboxPool, run_job) -> None:
    calls = {**NEWLY_DENIED, **NEWER_THAN_THE_LIST, "personality PER_LINUX": (135, 0)}
    ran = await run_job("python", PROBE, args=[json.dumps(calls)])
    assert ran.outcome.stdout_truncated is False
    results = json.loads(ran.stdout)
    assert {name: results[name] for name in NEWLY_DENIED} == dict.fromkeys(NEWLY_DENIED, "EPERM")
    assert {name: results[name] for name in NEWER_THAN_THE_LIST} == dict.fromkeys(
        NEWER_THAN_THE_LIST, "ENOSYS"
    )
    assert results["personality PER_LINUX"] == "OK"  # the default persona stays callable
    await assert_host_untouched(pool)


LOADER = r"""
import ctypes, errno, json, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
program = sys.stdin.buffer.read()
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
fprog = SockFprog(len(program) // 8, program)
assert libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0
def call(number, *args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_ulong(a) for a in args))
    return 'OK' if result != -1 else errno.errorcode[ctypes.get_errno()]
print(json.dumps({"getppid": call(110), "getuid": call(102), "gettid": call(186),
                  "ptrace": call(101, 0, 0, 0, 0), "getpid": call(39)}))
"""


def test_syscalls_above_the_reviewed_list_get_enosys() -> None:
    """The kernel under test has nothing above the list yet, so the prologue is checked in
    the kernel's own BPF engine with the boundary moved down: getuid (102) and gettid
    (186) are then "newer than the list", getppid (110) too; getpid (39) and ptrace (101)
    are not."""
    program = seccomp.compile_bpf(last_reviewed=101)
    loaded = subprocess.run(
        [sys.executable, "-I", "-c", LOADER],
        input=program,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert json.loads(loaded.stdout) == {
        "getppid": "ENOSYS",
        "getuid": "ENOSYS",
        "gettid": "ENOSYS",
        "ptrace": "EPERM",  # libseccomp's part still runs after the prologue
        "getpid": "OK",
    }


def test_names_libseccomp_does_not_know_are_resolved_from_the_table() -> None:
    for name, number in seccomp.X86_64_SYSCALLS.items():
        assert seccomp.syscall_number(name) == number
    assert max(seccomp.X86_64_SYSCALLS.values()) == seccomp.LAST_REVIEWED_SYSCALL


def test_an_unknown_syscall_name_is_an_error_not_a_skip() -> None:
    with pytest.raises(seccomp.SeccompError, match="no_such_syscall"):
        seccomp.syscall_number("no_such_syscall")
    # Known to libseccomp, but not a syscall of x86_64 (i386's socketcall).
    with pytest.raises(seccomp.SeccompError, match="socketcall"):
        seccomp.syscall_number("socketcall")


async def test_a_pool_whose_filter_cannot_be_built_does_not_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        seccomp, "DENIED_SYSCALLS", (*seccomp.DENIED_SYSCALLS, "not_a_syscall_at_all")
    )
    sandbox = SandboxPool(slots=1)
    with pytest.raises(SandboxUnavailable, match="not_a_syscall_at_all"):
        await sandbox.start()
    assert sandbox.slots == []
