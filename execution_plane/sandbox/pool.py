"""SandboxPool: what the worker calls. N slots, each running one job at a time."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile

from execution_plane.languages import Language, Registry, load_registry
from execution_plane.sandbox import budget, workdir
from execution_plane.sandbox.bwrap import bwrap_argv, bwrap_problem, find_bwrap
from execution_plane.sandbox.cgroups import CgroupTree, CgroupUnavailable, open_cgroup_tree
from execution_plane.sandbox.contract import (
    JobOutcome,
    JobSpec,
    LanguageInfo,
    OutputSink,
    ResourceLimits,
    StdinSource,
    TestCaseOutcome,
    TestCaseSink,
    Verdict,
)
from execution_plane.sandbox.output import CollectingSink
from execution_plane.sandbox.run_dir import UnsafeRunDir, check_run_dir, prepare_run_dir
from execution_plane.sandbox.seccomp import SeccompError, compile_bpf
from execution_plane.sandbox.slot import Slot, SlotBroken
from execution_plane.sandbox.stale import cgroup_name, reclaim_stale, work_root_prefix
from execution_plane.sandbox.step import run_step
from execution_plane.sandbox.test_cases import run_cases
from execution_plane.sandbox.toolchains import StagedToolchains
from execution_plane.sandbox.uids import NoFreeUid, UidLease
from sluice.settings import Settings, get_settings

PROBE_LIMITS = ResourceLimits(
    wall_time_ms=20_000,
    cpu_time_ms=15_000,
    memory_bytes=1 << 30,
    max_processes=64,
    max_output_bytes=65_536,
)

_pool_ids = itertools.count()


class SandboxUnavailable(Exception):
    """The host cannot run the sandbox (no bwrap, no cgroups, not root, ...)."""


class SandboxPool:
    def __init__(
        self, slots: int, work_root: str | None = None, settings: Settings | None = None
    ) -> None:
        settings = settings or get_settings()
        if not 1 <= slots <= settings.sandbox_uid_count:
            raise ValueError(f"slots must be between 1 and {settings.sandbox_uid_count}")
        self.slot_count = slots
        self.run_dir = settings.sandbox_run_dir
        self.uid_range = (settings.sandbox_uid_base, settings.sandbox_uid_count)
        self.uids: UidLease | None = None
        self.requested_work_root = work_root
        self.work_root = ""
        self.registry: Registry | None = None
        self.available: dict[str, Language] = {}
        self.versions: dict[str, str] = {}
        self.unavailable: dict[str, str] = {}  # language id -> why it is not offered
        self.slots: list[Slot] = []
        self.free: asyncio.Queue[Slot] = asyncio.Queue()
        self.tree: CgroupTree | None = None
        self.bwrap = ""
        self.seccomp_bpf = b""
        self.pool_id = next(_pool_ids)
        self.owns_work_root = False
        self.toolchains = StagedToolchains()
        self.reclaimed: list[str] = []  # leftovers of dead workers removed at start
        self.closing = False
        self._releasing: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.closing = False
        bwrap = find_bwrap()
        if bwrap is None:
            raise SandboxUnavailable("bubblewrap not found: install the Debian package bubblewrap")
        if os.geteuid() != 0:
            raise SandboxUnavailable(
                "the sandbox needs root (to switch to per-slot uids, mount and create cgroups)"
            )
        problem = await asyncio.to_thread(bwrap_problem, bwrap)
        if problem:
            raise SandboxUnavailable(problem)
        self.bwrap = bwrap
        self.registry = load_registry()
        self.unavailable = dict(self.registry.missing)
        try:
            self.seccomp_bpf = await asyncio.to_thread(compile_bpf)
            await asyncio.to_thread(prepare_run_dir, self.run_dir)
            self.reclaimed = await asyncio.to_thread(reclaim_stale, self.run_dir)
        except (SeccompError, UnsafeRunDir) as exc:
            raise SandboxUnavailable(str(exc)) from exc
        try:
            self.tree = open_cgroup_tree(cgroup_name(self.pool_id))
        except CgroupUnavailable as exc:
            raise SandboxUnavailable(str(exc)) from exc
        try:
            self._make_work_root()
            self.uids = UidLease(self.run_dir, *self.uid_range)
            for index in range(self.slot_count):
                slot = Slot(
                    index=index,
                    uid=self.uids.take(),
                    work_dir=os.path.join(self.work_root, f"slot-{index}"),
                    bwrap=bwrap,
                    seccomp_bpf=self.seccomp_bpf,
                    cgroup=self.tree.slot(index),
                )
                await slot.start()
                slot.reset_workdir(PROBE_LIMITS.workdir_bytes)
                self.slots.append(slot)
                self.free.put_nowait(slot)
            self._stage_private_mounts()
            await self._probe_languages()
        except SandboxUnavailable:
            await self.close()
            raise
        except (NoFreeUid, UnsafeRunDir) as exc:
            await self.close()
            raise SandboxUnavailable(str(exc)) from exc
        except Exception as exc:
            await self.close()
            raise SandboxUnavailable(f"sandbox start failed: {exc}") from exc
        if not self.available:
            reasons = "; ".join(f"{k}: {v}" for k, v in self.unavailable.items())
            await self.close()
            raise SandboxUnavailable(f"no language works in the sandbox ({reasons})")

    def _stage_private_mounts(self) -> None:
        assert self.registry is not None
        staging = os.path.join(self.work_root, "toolchains")
        for lang in self.registry.languages:
            for mount in lang.private_mounts:
                try:
                    self.toolchains.stage(mount.source, staging)
                except OSError as exc:
                    self.unavailable[lang.id] = f"cannot expose {mount.source}: {exc}"

    def _make_work_root(self) -> None:
        if self.requested_work_root:
            os.makedirs(self.requested_work_root, exist_ok=True)
            # Root unmounts what it finds there: only in a directory nobody else controls.
            check_run_dir(self.requested_work_root)
            # An earlier run of this worker may have died with its slots still mounted.
            workdir.unmount_all_under(self.requested_work_root)
            self.work_root = self.requested_work_root
        else:
            self.work_root = tempfile.mkdtemp(prefix=work_root_prefix(), dir=self.run_dir)
            self.owns_work_root = True
        # Slot uids must traverse it to bind their dir; nobody may list it.
        os.chmod(self.work_root, 0o711)

    async def wait_released(self) -> None:
        """Returns once every slot a finished job used is wiped and free again."""
        if self._releasing:
            await asyncio.wait(set(self._releasing))

    async def close(self) -> None:
        await self.wait_released()
        self.closing = True  # jobs killed now must not restart their slot's runner
        for slot in self.slots:
            with contextlib.suppress(Exception):
                await slot.close()
        self.slots.clear()
        self.free = asyncio.Queue()
        if self.tree:
            self.tree.remove()
            self.tree = None
        self.toolchains.release()
        if self.owns_work_root and self.work_root:
            shutil.rmtree(self.work_root, ignore_errors=True)
            self.owns_work_root = False
        if self.uids:
            # Last: no process of this pool's runs as its uids any more.
            self.uids.close()
            self.uids = None

    # -- languages -------------------------------------------------------------------

    def languages(self) -> list[LanguageInfo]:
        return [
            LanguageInfo(
                id=lang.id,
                name=lang.name,
                version=self.versions.get(lang.id, lang.version),
                file_name=lang.file_name,
                compiled=lang.compiled,
            )
            for lang in self.available.values()
        ]

    async def _probe_languages(self) -> None:
        """Keep the toolchains that actually work inside the sandbox; learn their versions."""
        assert self.registry is not None
        results = await asyncio.gather(*(self._probe(lang) for lang in self.registry.languages))
        for lang, (version, problem) in zip(self.registry.languages, results, strict=True):
            if lang.id in self.unavailable:
                continue
            if problem:
                self.unavailable[lang.id] = problem
            else:
                self.available[lang.id] = lang
                self.versions[lang.id] = version

    async def _probe(self, lang: Language) -> tuple[str, str]:
        if lang.id in self.unavailable:
            return "", self.unavailable[lang.id]
        if not lang.version_command:
            return lang.version, ""
        sink = CollectingSink()
        slot = await self.free.get()
        try:
            outcome = await self._step(
                slot,
                lang,
                list(lang.version_command),
                PROBE_LIMITS,
                b"",
                sink,
                asyncio.Event(),
            )
        finally:
            self.free.put_nowait(slot)
        if outcome.verdict is not Verdict.OK:
            return "", f"unusable in the sandbox: {outcome.verdict.value} {outcome.detail}".strip()
        return lang.parse_version(sink.text()) or lang.version or "unknown", ""

    # -- jobs ------------------------------------------------------------------------

    async def run_job(
        self, spec: JobSpec, on_output: OutputSink, cancelled: asyncio.Event,
        on_case: TestCaseSink | None = None,
    ) -> JobOutcome:
        """on_case hears each test case's outcome as it ends (a job with test_cases)."""
        language = self.available.get(spec.language)
        if language is None:
            return JobOutcome(Verdict.INTERNAL_ERROR, detail=f"unknown language {spec.language!r}")
        if not spec.files:
            return JobOutcome(Verdict.INTERNAL_ERROR, detail="no files")
        slot = await self._acquire(cancelled)
        if slot is None:
            return JobOutcome(Verdict.CANCELLED)
        try:
            return await self._run_on(slot, language, spec, on_output, cancelled, on_case)
        except SlotBroken as exc:
            slot.broken = True
            return JobOutcome(Verdict.INTERNAL_ERROR, detail=f"sandbox: {exc}")
        except workdir.WorkDirError as exc:
            return JobOutcome(Verdict.INTERNAL_ERROR, detail=str(exc))
        except asyncio.CancelledError:
            slot.broken = True  # a run may still be in flight: restart the runner
            raise
        except Exception as exc:  # the sandbox's own failure: say so, never raise
            slot.broken = True
            detail = f"sandbox: {type(exc).__name__}: {exc}".splitlines()[0]
            return JobOutcome(Verdict.INTERNAL_ERROR, detail=detail)
        finally:
            # The outcome goes back now; the slot rejoins `free` once it is clean, while
            # the caller reports the result.
            releasing = asyncio.create_task(self._release(slot))
            self._releasing.add(releasing)
            releasing.add_done_callback(self._releasing.discard)

    async def _acquire(self, cancelled: asyncio.Event) -> Slot | None:
        if cancelled.is_set():
            return None
        if not self.free.empty():
            return self.free.get_nowait()
        getter = asyncio.ensure_future(self.free.get())
        waiter = asyncio.ensure_future(cancelled.wait())
        try:
            await asyncio.wait([getter, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            slot = getter.result()
            if cancelled.is_set():
                self.free.put_nowait(slot)
                return None
            return slot
        return None

    async def _release(self, slot: Slot) -> None:
        if self.closing:
            return
        try:
            if slot.broken or not slot.alive:
                await slot.close()
                await slot.start()
                slot.broken = False
            # In a thread: unmounting frees every page the job wrote there.
            size = slot.workdir_bytes or PROBE_LIMITS.workdir_bytes
            await asyncio.to_thread(slot.reset_workdir, size)
        except Exception:
            # Keep the slot out of rotation rather than hand a dirty one to the next job.
            return
        self.free.put_nowait(slot)

    async def _run_on(
        self,
        slot: Slot,
        language: Language,
        spec: JobSpec,
        on_output: OutputSink,
        cancelled: asyncio.Event,
        on_case: TestCaseSink | None,
    ) -> JobOutcome:
        assert self.registry is not None
        if slot.workdir_bytes != spec.limits.workdir_bytes:
            await asyncio.to_thread(slot.reset_workdir, spec.limits.workdir_bytes)
        await asyncio.to_thread(workdir.write_files, slot.work_dir, spec.files, slot.uid, slot.gid)
        entry = spec.files[0].name
        compile_output = ""
        compiled = None
        if language.compiled:
            sink = CollectingSink()
            limits = budget.compile_limits(self.registry.compile_limits, spec.limits)
            compiled = await self._step(
                slot,
                language,
                language.compile_argv(entry, limits.memory_bytes),
                limits,
                b"",
                sink,
                cancelled,
            )
            compile_output = sink.text()
            if compiled.verdict in (Verdict.CANCELLED, Verdict.INTERNAL_ERROR):
                compiled.compile_output = compile_output
                return compiled
            if compiled.verdict is not Verdict.OK:
                why = "" if compiled.verdict is Verdict.RUNTIME_ERROR else compiled.verdict.value
                return JobOutcome(
                    Verdict.COMPILE_ERROR,
                    exit_code=compiled.exit_code,
                    signal=compiled.signal,
                    compile_output=compile_output,
                    usage=compiled.usage,
                    detail=f"compile step: {why}" if why else "",
                )
        if spec.test_cases:
            outcome = await self._run_cases(slot, language, spec, entry, cancelled,
                                            on_case or _ignore_case)
        else:
            outcome = await self._step(
                slot,
                language,
                language.run_argv(entry, spec.args, spec.limits.memory_bytes),
                spec.limits,
                spec.stdin,
                on_output,
                cancelled,
            )
        outcome.compile_output = compile_output
        if compiled is not None:
            outcome.usage = budget.total_usage(compiled.usage, outcome.usage)
        return outcome

    async def _run_cases(self, slot: Slot, language: Language, spec: JobSpec, entry: str,
                         cancelled: asyncio.Event, on_case: TestCaseSink) -> JobOutcome:
        """Each case from the work dir as the compile left it: the first case finds it so,
        each later one in a fresh tmpfs filled from a copy taken after the compile, so no
        case sees what another wrote."""
        snapshot = os.path.join(self.work_root, f"cases-{slot.index}")
        await asyncio.to_thread(shutil.rmtree, snapshot, True)
        await asyncio.to_thread(workdir.snapshot, slot.work_dir, snapshot)
        runs = 0

        async def run_case(args: list[str], stdin: bytes, sink: OutputSink) -> JobOutcome:
            nonlocal runs
            if runs:
                await asyncio.to_thread(slot.reset_workdir, spec.limits.workdir_bytes)
                await asyncio.to_thread(workdir.restore, snapshot, slot.work_dir, slot.uid,
                                        slot.gid)
            runs += 1
            return await self._step(
                slot, language, language.run_argv(entry, args, spec.limits.memory_bytes),
                spec.limits, stdin, sink, cancelled)

        try:
            return await run_cases(spec, run_case, on_case, cancelled)
        finally:
            await asyncio.to_thread(shutil.rmtree, snapshot, True)

    async def _step(
        self,
        slot: Slot,
        language: Language,
        command: list[str],
        limits: ResourceLimits,
        stdin: bytes | StdinSource,
        sink: OutputSink,
        cancelled: asyncio.Event,
    ) -> JobOutcome:
        assert self.registry is not None
        argv = bwrap_argv(
            self.bwrap, self.registry, language, slot.work_dir, command, self.toolchains.staged
        )
        return await run_step(
            slot,
            argv,
            limits,
            stdin,
            sink,
            cancelled,
            runtime_tasks=language.runtime_tasks,
        )


async def _ignore_case(case: TestCaseOutcome) -> None:
    """No one listens to the cases as they end (the outcome still counts them)."""
