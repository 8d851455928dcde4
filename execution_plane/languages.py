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

from execution_plane.sandbox.contract import ResourceLimits

REGISTRY_FILE = Path(__file__).with_name("languages.toml")


@dataclass(frozen=True)
class Mount:
    """A host path exposed read-only in the sandbox."""

    source: str
    dest: str


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

    def compile_argv(self, entry: str) -> list[str]:
        return [a.replace("{file}", entry) for a in self.compile]

    def run_argv(self, entry: str, args: list[str]) -> list[str]:
        return [a.replace("{file}", entry) for a in self.run] + list(args)

    def parse_version(self, output: str) -> str:
        match = re.search(self.version_pattern, output, re.MULTILINE)
        return match.group(1) if match else output.strip().splitlines()[0][:64] if output else ""


@dataclass(frozen=True)
class Registry:
    languages: tuple[Language, ...]
    base_mounts: tuple[Mount, ...]
    path_env: str
    compile_limits: ResourceLimits
    missing: dict[str, str] = field(default_factory=dict)  # id -> why it was left out


def _mount(spec: str) -> Mount:
    source, _, dest = spec.partition("=")
    return Mount(source=source, dest=dest or source)


def _missing_paths(mounts: tuple[Mount, ...]) -> list[str]:
    return [m.source for m in mounts if not os.path.exists(m.source)]


def load_registry(path: Path = REGISTRY_FILE) -> Registry:
    """Parse the registry; keep the languages whose toolchain paths exist on this host."""
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
