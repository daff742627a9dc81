#!/bin/sh
# Default /init of the lockstep guest initramfs: set the machine up, then give a shell on the
# console; power off when it exits.
. /etc/lockstep/setup.sh
echo "lockstep guest ready: Linux $(uname -r) $(uname -m)"
setsid cttyhack sh
echo "lockstep guest: shell exited, powering off"
poweroff -f
# poweroff -f does not return; if it ever fails, do not let init exit (that panics the kernel).
while :; do sleep 3600; done
