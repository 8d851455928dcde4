#!/bin/busybox sh
# PID 1 of the cgroup v2 test guest (tests/support/cgroup_v2_vm.py builds it into an
# initramfs with busybox and the kernel modules it loads). The guest's root is the host's
# own root, read-only over 9p, so the sandbox runs the host's very bwrap, toolchains,
# repository and virtualenv; only the kernel and the cgroup layout differ: one unified
# hierarchy with memory, pids and cpu enabled, nothing on v1.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in $(cat /modules.order); do
  insmod "/modules/$module" || echo "guest: insmod $module failed"
done
share=$(sed -n 's/.*sluice_share=\([^ ]*\).*/\1/p' /proc/cmdline)
# cache=loose: the host's files do not change while the guest runs, and every python
# start reads hundreds of them.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /newroot \
  || { echo "guest: cannot mount the host's root"; echo o > /proc/sysrq-trigger; }
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
# The host's /tmp stays visible (the repository or the share may live there); the guest's
# own temporary files go to a tmpfs under /run (TMPDIR, set by the run script).
mount -t tmpfs -o mode=755 run /newroot/run
mkdir -m 1777 /newroot/run/tmp
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup
echo "+memory +pids +cpu" > /newroot/sys/fs/cgroup/cgroup.subtree_control
# The share is a directory on the host, so its mount point exists in the read-only root.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 share "/newroot$share"
# Debian's kernel keeps unprivileged user namespaces behind this switch; bwrap needs them.
echo 1 > /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null
ip link set lo up 2>/dev/null
# switch_root, not chroot: a chrooted process may not create a user namespace.
exec switch_root /newroot /bin/sh -c \
  "/bin/sh $share/guest_run.sh; echo o > /proc/sysrq-trigger; sleep 60"
