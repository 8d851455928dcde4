#!/usr/bin/env bash
# What the cgroup v2 guest needs on the host: QEMU, a Debian kernel with its modules,
# and a static busybox for the guest's init. Skipped when all are there.
set -euo pipefail
packages=(qemu-system-x86 linux-image-amd64 busybox-static)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  printf 'bootstrap: installing %s (the cgroup v2 test guest)\n' "${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
