"""A QEMU guest whose only cgroup hierarchy is v2, with memory, pids and cpu delegated: the
kind of host this CI machine is not (its controllers are on v1), so that the sandbox's
suites can run against SlotCgroupV2's limits on a real kernel.

The guest boots Debian's kernel (linux-image-amd64) with an initramfs made here: a static
busybox, the virtio and 9p modules, and tests/cgroup_v2_vm/guest_init.sh as PID 1. Its root
is the host's root, read-only over 9p, so it runs the host's own bwrap, toolchains,
repository and virtualenv wherever they are (the host's /tmp included); a second, writable
9p share, mounted at its own host path, carries the script in and the results out, and the
guest's temporary files go to a tmpfs (TMPDIR=/run/tmp).
bin/sluice test installs what it needs (tests/cgroup_v2_vm/apt-packages.txt).

QEMU emulates (TCG) rather than using KVM: this machine is itself a VM, and nested KVM hangs
in the guest kernel's early boot here. A python start takes ~0.2 s in the guest against
~0.01 s on the host; the sandbox's limits in the suites leave room for that.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUEST_INIT = REPO / "tests" / "cgroup_v2_vm" / "guest_init.sh"
BUSYBOX = Path("/bin/busybox")
QEMU = "qemu-system-x86_64"
# What the guest's init mounts its root and the share with; their dependencies come along.
GUEST_MODULES = ("virtio_pci", "9pnet_virtio", "9p")


class GuestUnavailable(RuntimeError):
    """This host cannot boot the guest; the message says what is missing."""


@dataclass
class GuestRun:
    exit_code: int | None  # the script's; None when the guest never said (crash, timeout)
    output: str  # the script's stdout and stderr
    console: str  # the guest's serial console: the kernel's messages, the init's
    seconds: float


def _module_name(path: str) -> str:
    name = path.rsplit("/", 1)[-1].split(".ko", 1)[0]
    return name.replace("-", "_")


def module_load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The module files to insmod, dependencies first; built-in ones are left out."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, needs = line.partition(":")
        deps[path] = needs.split()
    by_name = {_module_name(path): path for path in deps}
    builtin_file = modules_dir / "modules.builtin"
    builtin = ({_module_name(line) for line in builtin_file.read_text().split()}
               if builtin_file.exists() else set())
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dependency in deps.get(path, []):
            visit(dependency)
        order.append(path)

    for name in wanted:
        if name in builtin:
            continue
        if name not in by_name:
            raise GuestUnavailable(f"kernel module {name} is neither in {modules_dir} nor built in")
        visit(by_name[name])
    return [modules_dir / path for path in order]


def _module_bytes(path: Path) -> bytes:
    # busybox's insmod takes plain ELF objects only.
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes())
    if path.suffix == ".ko":
        return path.read_bytes()
    raise GuestUnavailable(f"cannot unpack kernel module {path} for busybox's insmod")


class _Newc:
    """A cpio archive in the "newc" format, the one the kernel unpacks an initramfs from."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._inode = 0

    def _entry(self, name: str, mode: int, body: bytes = b"", rdev: tuple[int, int] = (0, 0)
               ) -> None:
        self._inode += 1
        encoded = name.encode() + b"\0"
        fields = (self._inode, mode, 0, 0, 1, 0, len(body), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        self._data += b"070701" + b"".join(b"%08X" % field for field in fields) + encoded
        self._data += b"\0" * (-len(self._data) % 4)
        self._data += body
        self._data += b"\0" * (-len(self._data) % 4)

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, body: bytes, executable: bool = False) -> None:
        self._entry(name, 0o100755 if executable else 0o100644, body)

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def packed(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return gzip.compress(bytes(self._data), compresslevel=1)


@dataclass
class CgroupV2Guest:
    vmlinuz: Path
    modules_dir: Path

    @classmethod
    def find(cls) -> CgroupV2Guest:
        """The newest kernel in /boot whose modules are installed; raises GuestUnavailable
        naming what is missing."""
        if shutil.which(QEMU) is None:
            raise GuestUnavailable(f"{QEMU} is not installed (tests/cgroup_v2_vm/apt-packages.txt)")
        if not BUSYBOX.is_file():
            raise GuestUnavailable(f"{BUSYBOX} is missing (Debian's busybox-static)")
        for vmlinuz in sorted(Path("/boot").glob("vmlinuz-*"), reverse=True):
            modules_dir = Path("/lib/modules") / vmlinuz.name.removeprefix("vmlinuz-")
            if (modules_dir / "modules.dep").is_file():
                return cls(vmlinuz, modules_dir)
        raise GuestUnavailable("no kernel in /boot with its modules in /lib/modules"
                               " (Debian's linux-image-amd64)")

    def initramfs(self) -> bytes:
        archive = _Newc()
        for directory in ("dev", "proc", "sys", "newroot", "bin", "modules"):
            archive.directory(directory)
        archive.char_device("dev/console", 5, 1)
        archive.file("init", GUEST_INIT.read_bytes(), executable=True)
        archive.file("bin/busybox", BUSYBOX.read_bytes(), executable=True)
        order = []
        for path in module_load_order(self.modules_dir, GUEST_MODULES):
            name = f"{_module_name(str(path))}.ko"
            archive.file(f"modules/{name}", _module_bytes(path))
            order.append(name)
        archive.file("modules.order", "\n".join(order).encode() + b"\n")
        return archive.packed()

    def run(self, script: str, share: Path, *, timeout_s: float = 900, memory_mb: int = 2048,
            cpus: int = 2) -> GuestRun:
        """Boots the guest, runs `script` (sh) in the repository with the virtualenv's tools
        on PATH, and powers it off. `share` is an empty host directory for the exchange."""
        share = share.resolve()
        if any(c.isspace() for c in str(share)):
            raise ValueError(f"the share's path goes on the kernel command line: {share}")
        initrd = share / "initrd.gz"
        initrd.write_bytes(self.initramfs())
        exit_file, output_file, console_file = (share / "exit_code", share / "output.txt",
                                                share / "console.log")
        (share / "guest_run.sh").write_text(
            f"cd {REPO}\n"
            f"export PATH={REPO}/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
            ":/sbin:/bin PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8\n"
            # The root is the host's, read-only: temporary files go to the guest's tmpfs.
            "export TMPDIR=/run/tmp HOME=/run/tmp\n"
            f"( {script}\n) > {output_file} 2>&1\n"
            f"echo $? > {exit_file}\n"
        )
        command = [
            QEMU, "-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot",
            "-m", str(memory_mb), "-smp", str(cpus),
            "-serial", f"file:{console_file}",
            "-kernel", str(self.vmlinuz), "-initrd", str(initrd),
            "-append", f"console=ttyS0 panic=-1 quiet sluice_share={share}",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,"
                       "readonly=on,multidevs=remap",
            "-virtfs", f"local,path={share},mount_tag=share,security_model=passthrough",
        ]
        started = time.monotonic()
        try:
            subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            pass  # the exit code is missing: the caller reports the console
        seconds = time.monotonic() - started

        def text(path: Path) -> str:
            return path.read_text(errors="replace") if path.exists() else ""

        code = text(exit_file).strip()
        return GuestRun(int(code) if code.isdigit() else None, text(output_file),
                        text(console_file), seconds)
