"""A slot's private work dir: a size-capped tmpfs the service mounts, fills and wipes.

Why a tmpfs mounted by the service rather than one inside bwrap: the compile step and the
run step are two sandboxes that must see the same files. Wiping is an unmount and a fresh
mount, so the service never walks a tree the program could have filled with symlinks or
hard links; the only writes the service makes go into a brand-new, empty tmpfs, through
directory fds with O_NOFOLLOW | O_EXCL, before any program ran there. The service never
reads anything back from it.
"""

from __future__ import annotations

import ctypes
import os
import re
import stat

from execution_plane.sandbox.contract import SourceFile

MNT_DETACH = 2
MS_NOSUID = 0x2
MS_NODEV = 0x4

_libc = ctypes.CDLL(None, use_errno=True)


class WorkDirError(Exception):
    """A file name or the mount itself was refused."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount_tmpfs(path: str, size_bytes: int, uid: int, gid: int) -> None:
    options = f"size={size_bytes},mode=0700,uid={uid},gid={gid},nr_inodes=16384"
    flags = MS_NOSUID | MS_NODEV
    result = _libc.mount(b"sluice-work", path.encode(), b"tmpfs", flags, options.encode())
    _check(result, f"mount tmpfs on {path}")


def unmount(path: str) -> None:
    # Lazy: a process that still holds a file there (it cannot, it was killed) must not
    # keep the next job's dir from being mounted.
    result = _libc.umount2(path.encode(), MNT_DETACH)
    if result != 0 and ctypes.get_errno() not in (22,):  # EINVAL: not mounted
        _check(result, f"umount {path}")


def mounts_under(path: str) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    root = os.path.realpath(path).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def unmount_all_under(path: str) -> None:
    """Lazily unmount everything at or below `path` (leftovers of an earlier run)."""
    for point in mounts_under(path):
        _libc.umount2(point.encode(), MNT_DETACH)


def validate_name(name: str) -> list[str]:
    """The path components of a source file name, or WorkDirError."""
    parts = name.split("/")
    if not name or name.startswith("/") or len(name) > 255 or "\0" in name:
        raise WorkDirError(f"bad file name {name!r}")
    for part in parts:
        if part in ("", ".", ".."):
            raise WorkDirError(f"bad file name {name!r}")
    return parts


def write_files(root: str, files: list[SourceFile], uid: int, gid: int) -> None:
    """Write the job's files into the (fresh) work dir, owned by the sandbox uid."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for source in files:
            *dirs, leaf = validate_name(source.name)
            dir_fd = os.dup(root_fd)
            try:
                for part in dirs:
                    try:
                        os.mkdir(part, 0o755, dir_fd=dir_fd)
                        os.chown(part, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
                    except FileExistsError:
                        pass
                    next_fd = os.open(
                        part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd
                    )
                    os.close(dir_fd)
                    dir_fd = next_fd
                fd = os.open(
                    leaf,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o644,
                    dir_fd=dir_fd,
                )
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        raise WorkDirError(f"{source.name!r} is not a regular file")
                    view = memoryview(source.content)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fchown(fd, uid, gid)
                finally:
                    os.close(fd)
            except FileExistsError as exc:
                raise WorkDirError(f"duplicate file name {source.name!r}") from exc
            finally:
                os.close(dir_fd)
    finally:
        os.close(root_fd)


def snapshot(root: str, dest: str) -> None:
    """Copy the work dir as the compile step left it into `dest` (made here, root's alone),
    so each test case can start from it. Nothing runs in the slot meanwhile; symlinks are
    copied as links, never followed, and anything but files, dirs and links is left out."""
    os.mkdir(dest, 0o700)
    for here, dirs, files in os.walk(root, followlinks=False):
        target = os.path.join(dest, os.path.relpath(here, root))
        for name in dirs:
            path = os.path.join(here, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(path), os.path.join(target, name))
            else:
                os.mkdir(os.path.join(target, name), stat.S_IMODE(info.st_mode) | 0o700)
        for name in files:
            path = os.path.join(here, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(path), os.path.join(target, name))
            elif stat.S_ISREG(info.st_mode):
                _copy_file(path, os.path.join(target, name), stat.S_IMODE(info.st_mode))


def restore(src: str, root: str, uid: int, gid: int) -> None:
    """Fill a fresh work dir from a snapshot, owned by the sandbox uid as before."""
    for here, dirs, files in os.walk(src, followlinks=False):
        target = os.path.join(root, os.path.relpath(here, src))
        for name in [*dirs, *files]:
            path, copy = os.path.join(here, name), os.path.join(target, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(path), copy)
            elif stat.S_ISDIR(info.st_mode):
                os.mkdir(copy, stat.S_IMODE(info.st_mode))
            else:
                _copy_file(path, copy, stat.S_IMODE(info.st_mode))
            os.chown(copy, uid, gid, follow_symlinks=False)


def _copy_file(path: str, copy: str, mode: int) -> None:
    source = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        target = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode)
        try:
            while chunk := os.read(source, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(target, view):]
            os.fchmod(target, mode)  # past the umask
        finally:
            os.close(target)
    finally:
        os.close(source)
