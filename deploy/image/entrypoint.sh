#!/bin/sh
# The image's entrypoint: `sluice ARGS...`, after one preparation the worker needs.
#
# A container that is not privileged gets /sys/fs/cgroup mounted read-only, but the
# worker's sandbox creates one cgroup per slot below its own (memory and pids limits,
# execution_plane/sandbox/cgroups.py). With a private cgroup namespace (the default on
# cgroup v2) the mount shows only the container's own subtree, so making it writable
# delegates that subtree and nothing above it. The remount needs CAP_SYS_ADMIN, which
# the worker has (deploy/image/README.md); the other services never reach this branch.
set -eu
if [ "${1:-}" = worker ] && [ "$(id -u)" = 0 ]; then
  if awk '$5 == "/sys/fs/cgroup" && $0 ~ / - cgroup2 / { split($6, o, ","); for (i in o) if (o[i] == "ro") found = 1 } END { exit !found }' /proc/self/mountinfo; then
    mount -o remount,rw /sys/fs/cgroup \
      || echo "sluice-entrypoint: cannot remount /sys/fs/cgroup read-write; the sandbox will report why it cannot start" >&2
  fi
fi
exec /opt/sluice/bin/sluice "$@"
