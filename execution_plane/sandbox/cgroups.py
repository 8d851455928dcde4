"""Per-slot cgroups: memory (with children, tmpfs included), tasks, CPU accounting, freezing.

Both cgroup v1 (one hierarchy per controller) and the unified v2 hierarchy are supported;
`open_cgroup_tree` detects which one holds the controllers we need. Slots live under a
directory named after the pool, inside the service's own cgroup, so the platform's
resources stay nested under whatever limits the service itself runs with.

All file operations here are single small reads and writes of kernel pseudo-files (no
disk I/O), so they are called directly from the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

V1_CONTROLLERS = ("memory", "pids", "cpuacct", "freezer")
V2_CONTROLLERS = ("memory", "pids")
SERVICE_LEAF = "sluice-service"
HOME = "home"  # a slot's own processes
RUN = "run"  # the run's  # v2: where the service moves itself to delegate controllers


class CgroupUnavailable(Exception):
    """The controllers the sandbox needs are not mounted or not writable."""


@dataclass
class Mountpoint:
    root: str  # the hierarchy path mounted there (not "/" inside some containers)
    path: str


def _mountinfo() -> list[tuple[str, str, str, set[str]]]:
    """(root, mountpoint, fstype, super options) of every cgroup mount."""
    result = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        fstype, _source, options = right.split()[:3]
        if fstype in ("cgroup", "cgroup2"):
            result.append((fields[3], fields[4], fstype, set(options.split(","))))
    return result


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for the unified hierarchy) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _join(mount: Mountpoint, cgroup_path: str) -> str:
    relative = os.path.relpath(cgroup_path, mount.root) if mount.root != "/" else cgroup_path
    relative = relative.lstrip("/")
    return os.path.normpath(os.path.join(mount.path, relative)) if relative != "." else mount.path


# A job reads and writes a dozen of these files; through open() each cost ~35 us here
# (a FileIO and a TextIOWrapper built and torn down), with plain fds ~12 us.
def _write(path: str, value: str) -> None:
    """One write(2) of the whole value, as cgroup files want it."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def _keyed(path: str, key: str) -> int:
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


class SlotCgroup:
    """The cgroups of one slot: its home (the runner, bwrap and the sandbox's init) and,
    beside it, the run's, where each run's tree runs under the step's limits. Every
    counter, limit and the sweep below are the run's: init and the runner are never in it.
    """

    version: int = 0

    def attach(self, pid: int) -> None:
        """Into the run's cgroup (a sandbox's next run, before it is told what to run)."""
        raise NotImplementedError

    def attach_home(self, pid: int) -> None:
        """Into the slot's home."""
        raise NotImplementedError

    def home_pids(self) -> list[int]:
        raise NotImplementedError

    def prepare(self, memory_bytes: int, max_tasks: int) -> None:
        """Set the limits of the next step and restart the peak and OOM counters."""
        raise NotImplementedError

    def cpu_ns(self) -> int:
        raise NotImplementedError

    def peak_memory(self) -> int:
        raise NotImplementedError

    def memory_now(self) -> int:
        raise NotImplementedError

    def oom_kills(self) -> int:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def _freeze(self, frozen: bool) -> None:
        raise NotImplementedError

    def _is_frozen(self) -> bool:
        raise NotImplementedError

    def remove(self) -> None:
        raise NotImplementedError

    async def kill_all(self, spare: int) -> None:
        """Kill every task but `spare` (the runner): freeze, SIGKILL each, thaw.

        Freezing first means a fork bomb cannot add tasks between listing and killing,
        and no pid can be reaped and reused meanwhile (the runner, the only reaper, is
        frozen too).
        """
        if not self.pids_besides(spare):
            return
        self._freeze(True)
        try:
            deadline = time.monotonic() + 1.0
            # v1 offers no notification of "frozen"; it takes microseconds anyway.
            while not self._is_frozen() and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            for pid in self.pids():
                if pid != spare:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        finally:
            self._freeze(False)

    def pids_besides(self, spare: int) -> list[int]:
        return [pid for pid in self.pids() if pid != spare]

    async def wait_empty(self, spare: int, within: float) -> bool:
        """Wait until only `spare` is left; False if something is still there after `within`."""
        deadline = time.monotonic() + within
        while self.pids_besides(spare):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True


class SlotCgroupV1(SlotCgroup):
    version = 1

    def __init__(self, slot_dirs: dict[str, str]) -> None:
        self.slot_dirs = slot_dirs  # controller -> the slot's directory
        self.home_dirs = {c: f"{d}/{HOME}" for c, d in slot_dirs.items()}
        self.dirs = {c: f"{d}/{RUN}" for c, d in slot_dirs.items()}  # the run's
        for d in (*self.home_dirs.values(), *self.dirs.values()):
            os.makedirs(d, exist_ok=True)
        mem = self.dirs["memory"]
        self.has_memsw = os.path.exists(f"{mem}/memory.memsw.limit_in_bytes")
        with contextlib.suppress(OSError):
            _write(f"{mem}/memory.swappiness", "0")
        self.memory_limit = -1

    def attach(self, pid: int) -> None:
        for d in self.dirs.values():
            _write(f"{d}/cgroup.procs", str(pid))

    def attach_home(self, pid: int) -> None:
        for d in self.home_dirs.values():
            _write(f"{d}/cgroup.procs", str(pid))

    def home_pids(self) -> list[int]:
        return [int(p) for p in _read(f"{self.home_dirs['pids']}/cgroup.procs").split()]

    def prepare(self, memory_bytes: int, max_tasks: int) -> None:
        mem = self.dirs["memory"]
        if memory_bytes != self.memory_limit:
            self._set_memory(mem, memory_bytes)
            self.memory_limit = memory_bytes
        _write(f"{self.dirs['pids']}/pids.max", str(max_tasks))
        _write(f"{mem}/memory.max_usage_in_bytes", "0")

    def _set_memory(self, mem: str, limit: int) -> None:
        # memsw.limit must never be below limit: the order of the writes depends on the
        # direction of the change.
        files = [f"{mem}/memory.limit_in_bytes"]
        if self.has_memsw:
            files.append(f"{mem}/memory.memsw.limit_in_bytes")
        try:
            for name in files:
                _write(name, str(limit))
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            for name in reversed(files):
                _write(name, str(limit))

    def cpu_ns(self) -> int:
        return int(_read(f"{self.dirs['cpuacct']}/cpuacct.usage"))

    def peak_memory(self) -> int:
        return int(_read(f"{self.dirs['memory']}/memory.max_usage_in_bytes"))

    def memory_now(self) -> int:
        return int(_read(f"{self.dirs['memory']}/memory.usage_in_bytes"))

    def oom_kills(self) -> int:
        return _keyed(f"{self.dirs['memory']}/memory.oom_control", "oom_kill")

    def pids(self) -> list[int]:
        return [int(p) for p in _read(f"{self.dirs['pids']}/cgroup.procs").split()]

    def _freeze(self, frozen: bool) -> None:
        _write(f"{self.dirs['freezer']}/freezer.state", "FROZEN" if frozen else "THAWED")

    def _is_frozen(self) -> bool:
        return _read(f"{self.dirs['freezer']}/freezer.state").strip() == "FROZEN"

    def remove(self) -> None:
        for d in (*self.dirs.values(), *self.home_dirs.values(), *self.slot_dirs.values()):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)


class SlotCgroupV2(SlotCgroup):
    version = 2

    def __init__(self, slot_dir: str) -> None:
        self.slot_dir = slot_dir
        self.home = f"{slot_dir}/{HOME}"
        self.dir = directory = f"{slot_dir}/{RUN}"  # the run's
        os.makedirs(slot_dir, exist_ok=True)
        # v2 keeps processes out of a cgroup that hands controllers down: the slot's own
        # tasks live in its home leaf, the run's in the run leaf, which has the limits.
        # (A hierarchy with no controllers, v1's companion, has no file to write.)
        with contextlib.suppress(FileNotFoundError):
            _write(f"{slot_dir}/cgroup.subtree_control", " ".join(f"+{c}" for c in V2_CONTROLLERS))
        os.makedirs(self.home, exist_ok=True)
        os.makedirs(directory, exist_ok=True)
        with contextlib.suppress(OSError):
            _write(f"{directory}/memory.swap.max", "0")
        # memory.peak is reset per open file (kernel 6.12+): keep one open for this slot.
        self.peak_fd: int | None = None
        with contextlib.suppress(OSError):
            self.peak_fd = os.open(f"{directory}/memory.peak", os.O_RDWR)
        self.peak_resettable = False
        self.memory_limit = -1

    def attach(self, pid: int) -> None:
        _write(f"{self.dir}/cgroup.procs", str(pid))

    def attach_home(self, pid: int) -> None:
        _write(f"{self.home}/cgroup.procs", str(pid))

    def home_pids(self) -> list[int]:
        return [int(p) for p in _read(f"{self.home}/cgroup.procs").split()]

    def prepare(self, memory_bytes: int, max_tasks: int) -> None:
        if memory_bytes != self.memory_limit:
            _write(f"{self.dir}/memory.max", str(memory_bytes))
            self.memory_limit = memory_bytes
        _write(f"{self.dir}/pids.max", str(max_tasks))
        if self.peak_fd is not None:
            try:
                os.pwrite(self.peak_fd, b"reset", 0)
                self.peak_resettable = True
            except OSError:
                self.peak_resettable = False

    def cpu_ns(self) -> int:
        return _keyed(f"{self.dir}/cpu.stat", "usage_usec") * 1000

    def peak_memory(self) -> int:
        if self.peak_fd is not None:
            return int(os.pread(self.peak_fd, 64, 0).split()[0])
        return self.memory_now()

    def memory_now(self) -> int:
        return int(_read(f"{self.dir}/memory.current"))

    def oom_kills(self) -> int:
        return _keyed(f"{self.dir}/memory.events", "oom_kill")

    def pids(self) -> list[int]:
        return [int(p) for p in _read(f"{self.dir}/cgroup.procs").split()]

    def _freeze(self, frozen: bool) -> None:
        _write(f"{self.dir}/cgroup.freeze", "1" if frozen else "0")

    def _is_frozen(self) -> bool:
        return _keyed(f"{self.dir}/cgroup.events", "frozen") == 1

    def remove(self) -> None:
        if self.peak_fd is not None:
            os.close(self.peak_fd)
            self.peak_fd = None
        for d in (self.dir, self.home, self.slot_dir):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)


class CgroupTree:
    """The pool's directory in the cgroup hierarchy (or hierarchies) and its slots."""

    def __init__(self, version: int, parents: dict[str, str]) -> None:
        self.version = version
        self.parents = parents  # controller (or "" for v2) -> the pool's directory
        self.slots: list[SlotCgroup] = []

    def slot(self, index: int) -> SlotCgroup:
        name = f"slot-{index}"
        if self.version == 1:
            group: SlotCgroup = SlotCgroupV1({c: f"{d}/{name}" for c, d in self.parents.items()})
        else:
            group = SlotCgroupV2(f"{self.parents['']}/{name}")
        self.slots.append(group)
        return group

    def remove(self) -> None:
        for group in self.slots:
            with contextlib.suppress(OSError):
                group.remove()
        for d in self.parents.values():
            with contextlib.suppress(OSError):
                os.rmdir(d)


def locate_bases() -> tuple[int, dict[str, str]]:
    """Where pools of this process create their cgroups: (version, controller -> dir)."""
    mounts = _mountinfo()
    own = _own_cgroups()
    v1: dict[str, str] = {}
    for controller in V1_CONTROLLERS:
        for root, path, fstype, options in mounts:
            if fstype == "cgroup" and controller in options and controller in own:
                v1[controller] = _join(Mountpoint(root, path), own[controller])
                break
    if len(v1) == len(V1_CONTROLLERS):
        return 1, v1
    for root, path, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in own:
            base = _join(Mountpoint(root, path), own[""])
            if os.path.basename(base) == SERVICE_LEAF:  # moved there by an earlier pool
                base = os.path.dirname(base)
            try:
                available = _read(f"{base}/cgroup.controllers").split()
            except OSError:
                continue
            if all(c in available for c in V2_CONTROLLERS):
                return 2, {"": base}
    missing = [c for c in V1_CONTROLLERS if c not in v1]
    raise CgroupUnavailable(
        "cgroup controllers unusable: need v1 "
        f"{'/'.join(V1_CONTROLLERS)} (missing {', '.join(missing)}) or a v2 hierarchy "
        "with memory and pids delegated to this process"
    )


def open_cgroup_tree(name: str) -> CgroupTree:
    """Create the pool's cgroup directory below the service's own cgroup."""
    version, bases = locate_bases()
    try:
        if version == 1:
            parents = {c: f"{d}/{name}" for c, d in bases.items()}
            for d in parents.values():
                os.makedirs(d, exist_ok=True)
            return CgroupTree(1, parents)
        return CgroupTree(2, {"": _create_v2_parent(bases[""], name)})
    except OSError as exc:
        raise CgroupUnavailable(f"cannot create the sandbox cgroups: {exc}") from exc


def thaw_tree_dir(directory: str) -> None:
    """Thaw a cgroup dir and everything below it. A worker killed between freezing a slot
    and thawing it leaves its tasks frozen, and a frozen task does not die of SIGKILL
    under cgroup v1 until it is thawed."""
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            thaw_tree_dir(entry.path)
    for name, thawed in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
        with contextlib.suppress(OSError):
            _write(f"{directory}/{name}", thawed)


def remove_tree_dir(directory: str) -> bool:
    """Kill whatever is left in a pool's cgroup dir and remove it; False if it stays."""
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            remove_tree_dir(entry.path)
    for _ in range(50):
        try:
            for pid in _read(f"{directory}/cgroup.procs").split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            os.rmdir(directory)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.01)  # killed tasks take a moment to leave
    return False


def _create_v2_parent(base: str, name: str) -> str:
    """v2 only lets a cgroup without processes hand controllers to its children."""
    parent = f"{base}/{name}"
    os.makedirs(parent, exist_ok=True)
    wanted = " ".join(f"+{c}" for c in V2_CONTROLLERS)
    try:
        _write(f"{base}/cgroup.subtree_control", wanted)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        # Processes live in the service's cgroup (in a container: the whole container,
        # ours and our parents). Move them all into a leaf beside the pool, as container
        # inits do, then delegate. They stay under `base`, so its limits still hold.
        leaf = f"{base}/{SERVICE_LEAF}"
        os.makedirs(leaf, exist_ok=True)
        for pid in _read(f"{base}/cgroup.procs").split():
            try:
                _write(f"{leaf}/cgroup.procs", pid)
            except OSError as move_error:
                # Gone meanwhile, or a kernel thread that cannot move.
                if move_error.errno not in (errno.ESRCH, errno.EINVAL):
                    raise
        _write(f"{base}/cgroup.subtree_control", wanted)
    _write(f"{parent}/cgroup.subtree_control", wanted)
    return parent
