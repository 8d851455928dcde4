"""The sandbox's own suites, run again on a cgroup v2 host.

This machine's controllers are on cgroup v1, so every other test runs SlotCgroupV1. Here a
QEMU guest (tests/support/cgroup_v2_vm.py) boots with one unified hierarchy and the memory,
pids and cpu controllers delegated, and runs the verdict tests, the v2 slot's tests and
every attack test inside it: the memory bombs must end as MEMORY_LIMIT_EXCEEDED through
memory.max and memory.events, a slot must refuse tasks past pids.max, the fork and thread
bombs must be contained, CPU must be counted from cpu.stat, nothing a job starts may
outlive it, and a slot's sandbox made ahead of time must be reset clean between jobs, all
on v2.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support.cgroup_v2_vm import CgroupV2Guest, GuestRun, GuestUnavailable

# The sandbox's attack tests; tests/security/platform needs a broker the guest does not have.
SUITES = ("tests/sandbox/test_verdicts.py", "tests/sandbox/test_cgroup_v2.py",
          "tests/sandbox/test_pooled_reset.py",
          "tests/security", "--ignore=tests/security/platform")
LAYOUT_PROBE = (
    "import json; from execution_plane.sandbox.cgroups import locate_bases; "
    "version, bases = locate_bases(); "
    "print('cgroup-layout', json.dumps({'version': version, 'delegated': "
    "open(bases[''] + '/cgroup.subtree_control').read().split() if version == 2 else []}))"
)


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> GuestRun:
    try:
        guest = CgroupV2Guest.find()
    except GuestUnavailable as exc:
        pytest.skip(f"no cgroup v2 guest on this host: {exc}")
    script = (f'python -c "{LAYOUT_PROBE}"\n'
              f"python -m pytest -q -rfEs -p no:cacheprovider {' '.join(SUITES)}")
    return guest.run(script, tmp_path_factory.mktemp("cgroup-v2-guest"))


def _explain(run: GuestRun) -> str:
    return (f"after {run.seconds:.0f} s; the suites said:\n{run.output[-4000:]}\n"
            f"the guest's console:\n{run.console[-3000:]}")


def test_the_guest_gives_the_sandbox_cgroup_v2_with_its_controllers(guest_run: GuestRun
                                                                    ) -> None:
    probe = re.search(r"^cgroup-layout (.*)$", guest_run.output, re.MULTILINE)
    if probe is None:
        pytest.fail(f"the guest did not report its cgroups {_explain(guest_run)}", pytrace=False)
    layout = json.loads(probe.group(1))
    assert layout["version"] == 2
    assert {"memory", "pids"} <= set(layout["delegated"])


def test_the_sandbox_suites_pass_on_cgroup_v2(guest_run: GuestRun) -> None:
    if guest_run.exit_code != 0:
        pytest.fail(f"the suites failed on cgroup v2 {_explain(guest_run)}", pytrace=False)
    summary = guest_run.output.strip().splitlines()[-1]
    # Every test ran and passed: none skipped for want of something the guest lacks.
    if not re.fullmatch(r"\d+ passed in [\d.]+s( \([\d:]+\))?", summary):
        pytest.fail(f"not every test passed on cgroup v2 {_explain(guest_run)}", pytrace=False)
    assert int(summary.split()[0]) >= 40, summary
