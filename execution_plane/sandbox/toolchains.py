"""Toolchains behind a directory only root may traverse, made reachable read-only.

rustup installs under /root (mode 0700). bwrap runs as the slot's unprivileged uid and
resolves its bind sources by name, so it cannot reach them (and bwrap 0.8's --ro-bind-fd
resolves the fd back to that same path). The pool therefore bind-mounts just the toolchain
directory, read-only, nosuid and nodev, under its own work root, and unmounts it at close.
Nothing else of /root becomes reachable: the bind exposes that one directory's subtree.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_PRIVATE = 0x40000
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, flags: int) -> None:
    fstype = b"none"
    if _libc.mount(source.encode(), target.encode(), fstype, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


class StagedToolchains:
    def __init__(self) -> None:
        self.staged: dict[str, str] = {}  # private source -> reachable read-only bind

    def stage(self, source: str, staging_root: str) -> str:
        if source in self.staged:
            return self.staged[source]
        os.makedirs(staging_root, mode=0o711, exist_ok=True)
        os.chmod(staging_root, 0o711)
        name = hashlib.sha256(source.encode()).hexdigest()[:16]
        target = os.path.join(staging_root, name)
        os.makedirs(target, mode=0o755, exist_ok=True)
        _mount(source, target, MS_BIND)
        try:
            _mount("none", target, MS_PRIVATE)
            _mount(source, target, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        except OSError:
            _libc.umount2(target.encode(), MNT_DETACH)
            raise
        self.staged[source] = target
        return target

    def release(self) -> None:
        for target in self.staged.values():
            _libc.umount2(target.encode(), MNT_DETACH)
            with contextlib.suppress(OSError):
                os.rmdir(target)
        self.staged.clear()
