#!/bin/sh
# The image's entrypoint: `sluice ARGS...`, after two preparations the worker needs and
# every container runtime undoes for a container that is not privileged. Both need root
# and CAP_SYS_ADMIN, which the worker has (deploy/image/README.md); the other services
# never reach them, and a failure is reported by the sandbox's own start-up check.
set -eu

# 1. /proc without the runtime's masks. Runtimes hide a few /proc files and directories
#    under other mounts (kcore, keys, timer_list, acpi, a read-only sys, ...). bwrap mounts
#    a fresh /proc in each job's PID namespace from inside a new user namespace, and the
#    kernel refuses that while the container's /proc has hidden parts (it would reveal
#    them): "Can't mount proc on /newroot/proc: Operation not permitted". Kubernetes'
#    `procMount: Unmasked` would ask for this, but it requires `hostUsers: false`. The
#    masks are no boundary for the worker itself (CAP_SYS_ADMIN could lift them); the
#    jobs see only their own /proc, in their own namespaces.
unmask_proc() {
  awk '$5 ~ "^/proc/" { print $5 }' /proc/self/mountinfo | sort -r | while read -r mount; do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null \
      || echo "sluice-entrypoint: cannot unmount $mount" >&2
  done
}

# 2. A writable cgroup tree. The sandbox creates one cgroup per slot below its own (memory
#    and pids limits, execution_plane/sandbox/cgroups.py), but /sys/fs/cgroup is mounted
#    read-only. With a private cgroup namespace (the default on cgroup v2) the mount shows
#    only the container's own subtree, so making it writable delegates that subtree and
#    nothing above it.
writable_cgroups() {
  if awk '$5 == "/sys/fs/cgroup" && $0 ~ / - cgroup2 / {
            split($6, o, ","); for (i in o) if (o[i] == "ro") found = 1 }
          END { exit !found }' /proc/self/mountinfo; then
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null \
      || mount -o remount,bind,rw /sys/fs/cgroup \
      || echo "sluice-entrypoint: cannot remount /sys/fs/cgroup read-write" >&2
  fi
}

if [ "${1:-}" = worker ] && [ "$(id -u)" = 0 ]; then
  unmask_proc
  writable_cgroups
fi
exec /opt/sluice/bin/sluice "$@"
