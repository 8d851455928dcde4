"""The language registry: execution_plane/languages.toml, parsed and checked against the host.

Only the declaration lives here; whether a toolchain really works inside the sandbox (and
which version it is) is found by running its version command there, at pool start.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from execution_plane.sandbox.contract import ResourceLimits

REGISTRY_FILE = Path(__file__).with_name("languages.toml")
FILE_PLACEHOLDER = "{file}"


class RegistryError(ValueError):
    """languages.toml says something the sandbox cannot run safely."""


@dataclass(frozen=True)
class Mount:
    """A host path exposed read-only in the sandbox."""

    source: str
    dest: str
    # Behind a directory an unprivileged uid cannot traverse (rustup under /root, 0700):
    # bwrap, running as the slot's uid, cannot reach it; the pool stages a read-only bind
    # of just this directory where it can (see toolchains.py).
    private: bool = False


@dataclass(frozen=True)
class Language:
    id: str
    name: str
    file_name: str
    run: tuple[str, ...]
    compile: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    version: str = ""
    version_command: tuple[str, ...] = ()
    version_pattern: str = "(\\S+)"
    runtime_tasks: int = 0

    @property
    def compiled(self) -> bool:
        return bool(self.compile)

    def compile_argv(self, entry: str, memory_bytes: int) -> list[str]:
        return [_expand(a, entry, memory_bytes) for a in self.compile]

    def run_argv(self, entry: str, args: list[str], memory_bytes: int) -> list[str]:
        return [_expand(a, entry, memory_bytes) for a in self.run] + list(args)

    @property
    def private_mounts(self) -> tuple[Mount, ...]:
        return tuple(m for m in self.mounts if m.private)

    def parse_version(self, output: str) -> str:
        match = re.search(self.version_pattern, output, re.MULTILINE)
        return match.group(1) if match else output.strip().splitlines()[0][:64] if output else ""


def entry_path(entry: str) -> str:
    """The entry file as compilers and interpreters get it: a path, never an option.

    gcc, g++, javac and rustc read `@NAME` as a file of options and every tool reads
    `-NAME` as an option; `./NAME` is neither, whatever NAME is. The API refuses such
    names already; this holds even for a job that did not come through it.
    """
    return f"./{entry}"


def _expand(arg: str, entry: str, memory_bytes: int) -> str:
    # {memory_bytes}: runtimes that size their heap from the machine (the JVM) must size
    # it from the job's limit instead, or they are OOM-killed before they collect garbage.
    if arg == FILE_PLACEHOLDER:
        return entry_path(entry)
    return arg.replace("{memory_bytes}", str(memory_bytes))


@dataclass(frozen=True)
class Registry:
    languages: tuple[Language, ...]
    base_mounts: tuple[Mount, ...]
    path_env: str
    compile_limits: ResourceLimits
    missing: dict[str, str] = field(default_factory=dict)  # id -> why it was left out


def _mount(spec: str) -> Mount:
    source, _, dest = spec.partition("=")
    return Mount(source=source, dest=dest or source, private=not _reachable_by_anyone(source))


def _reachable_by_anyone(path: str) -> bool:
    """Whether every directory above `path` lets other users through."""
    parent = os.path.dirname(os.path.abspath(path))
    while True:
        try:
            if not os.stat(parent).st_mode & 0o001:
                return False
        except OSError:
            return False
        if parent == "/":
            return True
        parent = os.path.dirname(parent)


def _missing_paths(mounts: tuple[Mount, ...]) -> list[str]:
    return [m.source for m in mounts if not os.path.exists(m.source)]


def load_registry(path: Path = REGISTRY_FILE) -> Registry:
    """Parse the registry; keep the languages whose toolchain paths exist on this host."""
    # Imported here: the sandbox package imports this module, and importing this module
    # first must work too.
    from execution_plane.sandbox.contract import ResourceLimits

    with path.open("rb") as f:
        data = tomllib.load(f)
    sandbox = data.get("sandbox", {})
    base_mounts = tuple(_mount(p) for p in sandbox.get("base_paths", []))
    limits = data.get("compile_limits", {})
    compile_limits = ResourceLimits(
        wall_time_ms=int(limits.get("wall_time_ms", 30_000)),
        cpu_time_ms=int(limits.get("cpu_time_ms", 20_000)),
        memory_bytes=int(limits.get("memory_bytes", 1 << 30)),
        max_processes=int(limits.get("max_processes", 64)),
        max_output_bytes=int(limits.get("max_output_bytes", 65_536)),
        max_file_bytes=int(limits.get("max_file_bytes", 128 << 20)),
    )
    languages: list[Language] = []
    missing: dict[str, str] = {}
    for entry in data.get("language", []):
        for key in ("compile", "run"):
            for arg in entry.get(key, ()):
                if FILE_PLACEHOLDER in arg and arg != FILE_PLACEHOLDER:
                    # Glued to other text ("-x{file}") it could not be made a plain path.
                    raise RegistryError(
                        f"language {entry['id']!r}: {key} argument {arg!r}: "
                        f"{FILE_PLACEHOLDER} must be a whole argument"
                    )
        language = Language(
            id=entry["id"],
            name=entry["name"],
            file_name=entry["file_name"],
            run=tuple(entry["run"]),
            compile=tuple(entry.get("compile", ())),
            mounts=tuple(_mount(p) for p in entry.get("paths", [])),
            env=tuple(sorted(entry.get("env", {}).items())),
            version=entry.get("version", ""),
            version_command=tuple(entry.get("version_command", ())),
            version_pattern=entry.get("version_pattern", "(\\S+)"),
            runtime_tasks=int(entry.get("runtime_tasks", 0)),
        )
        absent = _missing_paths(language.mounts)
        if absent:
            missing[language.id] = f"not installed: {', '.join(absent)}"
            continue
        languages.append(language)
    return Registry(
        languages=tuple(languages),
        base_mounts=tuple(m for m in base_mounts if os.path.exists(m.source)),
        path_env=sandbox.get("path", "/usr/bin:/bin"),
        compile_limits=compile_limits,
        missing=missing,
    )
