#!/bin/sh
# Default /init of the lockstep guest initramfs: set the machine up, then give a shell on the
# console; power off when it exits. With `root=DEV` on the kernel command line (a root file
# system from `lockstep image build`), it switches to that file system's /sbin/init instead.
. /etc/lockstep/setup.sh
root=
for arg in $(cat /proc/cmdline); do
    case "$arg" in root=*) root="${arg#root=}" ;; esac
done
if [ -n "$root" ]; then
    if [ "$root" != /dev/vda ]; then
        umount /mnt 2>/dev/null
        mount "$root" /mnt
    fi
    if [ -L /mnt/sbin/init ] || [ -x /mnt/sbin/init ]; then
        umount /tmp
        for d in dev proc sys run; do mount --move "/$d" "/mnt/$d"; done
        exec switch_root /mnt /sbin/init
    fi
    echo "lockstep guest: root=$root has no /sbin/init: a shell instead"
fi
echo "lockstep guest ready: Linux $(uname -r) $(uname -m)"
setsid cttyhack sh
echo "lockstep guest: shell exited, powering off"
poweroff -f
# poweroff -f does not return; if it ever fails, do not let init exit (that panics the kernel).
while :; do sleep 3600; done
