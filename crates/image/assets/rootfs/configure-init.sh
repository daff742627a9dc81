#!/bin/sh
# /init of the configure stage of `lockstep image build debian`: mounts the new root file
# system (/dev/vda, by the setup script), runs its configure script in a chroot, and powers
# off. The host reads the result from the console: "lockstep-configure: exit N".
. /etc/lockstep/setup.sh
if ! grep -q ' /mnt ' /proc/mounts; then
    echo "lockstep-configure: exit 98 (no root file system on /dev/vda)"
    poweroff -f
fi
mount -t proc proc /mnt/proc
mount -t sysfs sysfs /mnt/sys
mount -o bind /dev /mnt/dev
mount -t devpts devpts /mnt/dev/pts
mount -t tmpfs tmpfs /mnt/run
mount -t tmpfs tmpfs /mnt/tmp
chroot /mnt /bin/sh /var/lib/lockstep/configure.sh
rc=$?
for d in tmp run dev/pts dev sys proc; do umount "/mnt/$d"; done
sync
mount -o remount,ro /mnt || rc=97
umount /mnt || rc=97
echo "lockstep-configure: exit $rc"
poweroff -f
while :; do sleep 3600; done
