"""The Terraform variables that restate something of the code must agree with it.

    .venv/bin/python deploy/checks/terraform_defaults.py deploy/terraform/aws/variables.tf

retry_delays_ms is RETRY_DELAYS_MS (sluice/topology.py): the scaling alarms leave the
retry queues out of the work by their names. worker_slots and worker_shutdown_grace_s
default as the settings do, so a task without them set behaves as the Terraform's
scaling and stopTimeout assume. Run with the
project's virtualenv (it imports sluice).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from sluice.settings import Settings
from sluice.topology import RETRY_DELAYS_MS


def defaults(text: str) -> dict[str, str]:
    found = {}
    for match in re.finditer(r'variable "(\w+)" \{(.*?)\n\}', text, re.S):
        default = re.search(r"^\s*default\s*=\s*(.+?)\s*$", match.group(2), re.M)
        if default:
            found[match.group(1)] = default.group(1).strip('"')
    return found


def main() -> int:
    variables = defaults(Path(sys.argv[1]).read_text())
    settings = Settings()
    expected = {
        "retry_delays_ms": list(RETRY_DELAYS_MS),
        "worker_slots": settings.worker_slots,
        "worker_shutdown_grace_s": settings.worker_shutdown_grace_s,
    }
    findings = [f"variable {name} defaults to {variables.get(name)!r}, the code says {want}"
                for name, want in expected.items()
                if variables.get(name) is None or json.loads(variables[name]) != want]
    print(f"  {len(expected)} variables compared with sluice/topology.py and sluice/settings.py")
    for finding in findings:
        print(f"  FINDING {finding}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
