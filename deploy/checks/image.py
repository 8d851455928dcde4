"""Structural checks of deploy/image/Dockerfile that hadolint does not make (image.py, not
dockerfile.py: checkov would take a file of that name for a Dockerfile).

    python image.py Dockerfile

- every base is pinned: an exact tag with a version or date in it, or a digest; never
  `latest` or a bare name;
- more than one stage, and the last (the runtime) installs no build tools: no compiler
  toolchain meta-packages, no -dev headers, no pip;
- no setuid or setgid file survives in the runtime (the worker may escalate privileges);
- the runtime's default user is not root, and its entrypoint runs through an init (tini)
  so the worker's SIGTERM drain and the sandbox's orphans are handled;
- it is the image of every service: the entrypoint is sluice's, no service is baked in.
Standard library only. Each finding is printed; exit status 1 when there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BUILD_TOOLS = re.compile(r"\b(build-essential|python3-dev|[a-z0-9.+-]+-dev|python3-pip|"
                         r"pip3? install|make|cmake)\b")
PINNED_TAG = re.compile(r":[^:@/]*\d[^:@/]*$")  # a tag holding a version number or date


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            joined.append((word.upper(), rest.strip()))
        current = ""
    return joined


def main() -> int:
    path = Path(sys.argv[1])
    steps = instructions(path.read_text())
    args = {}
    findings = []
    stages: list[list[tuple[str, str]]] = []
    for word, rest in steps:
        if word == "ARG" and "=" in rest and not stages:
            name, _, value = rest.partition("=")
            args[name] = value
        if word == "FROM":
            stages.append([])
            image = rest.split()[0]
            resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)),
                              image)
            if "@sha256:" not in resolved and (not PINNED_TAG.search(resolved)
                                               or resolved.endswith(":latest")):
                findings.append(f"FROM {image} ({resolved}): not pinned to a version or digest")
        if stages:
            stages[-1].append((word, rest))
    if len(stages) < 2:
        findings.append("one stage only: the build must not be the runtime")
    runtime = stages[-1] if stages else []
    for word, rest in runtime:
        if word == "RUN":
            tools = sorted({m.group(0) for m in BUILD_TOOLS.finditer(rest)})
            if tools:
                findings.append(f"the runtime stage installs build tools: {', '.join(tools)}")
    if not any(word == "RUN" and "chmod a-s" in rest for word, rest in runtime):
        findings.append("the runtime stage keeps setuid/setgid files (find ... chmod a-s)")
    users = [rest for word, rest in runtime if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        findings.append("the runtime stage's default user is root")
    entrypoint = " ".join(rest for word, rest in runtime if word == "ENTRYPOINT")
    if "tini" not in entrypoint or "sluice" not in entrypoint:
        findings.append("the entrypoint must be sluice under tini")
    cmd = " ".join(rest for word, rest in runtime if word == "CMD")
    if any(service in cmd for service in ("control-plane", "worker", "recovery")):
        findings.append("CMD names a service: the deployment chooses it")
    print(f"  {len(stages)} stages, {len(steps)} instructions")
    for finding in findings:
        print(f"  FINDING {finding}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
