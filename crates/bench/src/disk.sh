#!/bin/sh
# /init of `lockstep bench disk`: on each scratch disk (found by its serial), a sequential
# write of @MIB@ MiB with O_DIRECT ending in fsync, then, with caches dropped, a sequential
# O_DIRECT read. Prints "BENCH <format>_<write|read> <guest seconds>", then powers off.
. /etc/lockstep/setup.sh
t() { cut -d' ' -f1 /proc/uptime; }
d() { awk "BEGIN{print $2-$1}"; }
# timed NAME DD-ARGS…: one BENCH line, or dd's complaint on the console.
timed() {
    name=$1
    shift
    a=$(t)
    if dd "$@" bs=1M count=@MIB@ 2>/tmp/dd.err; then
        echo "BENCH $name $(d "$a" "$(t)")"
    else
        echo "lockstep-bench: $name failed:" && cat /tmp/dd.err
    fi
}
# The device whose serial is $1 (virtio_blk may still be probing it).
by_serial() {
    i=0
    while [ "$i" -lt 50 ]; do
        for b in /sys/block/vd*; do
            [ "$(cat "$b/serial" 2>/dev/null)" = "$1" ] && echo "/dev/${b##*/}" && return
        done
        sleep 0.1
        i=$((i + 1))
    done
}
for disk in @DISKS@; do
    format=${disk%%:*}
    dev=$(by_serial "${disk#*:}")
    if [ -z "$dev" ]; then
        echo "lockstep-bench: no disk with serial ${disk#*:}"
        continue
    fi
    timed "${format}_write" if=/dev/zero of="$dev" oflag=direct conv=fsync
    echo 3 >/proc/sys/vm/drop_caches
    timed "${format}_read" if="$dev" of=/dev/null iflag=direct
done
echo "BENCH done $(t)"
poweroff -f
while :; do sleep 3600; done
