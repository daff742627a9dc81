#!/bin/sh
# /init of `lockstep bench net`: TCP to the host over eth0 (set up from lockstep.ip= by
# setup.sh), timed by the host. First sends @MIB@ MiB of zeros to @HOST@:@SINK@, then
# reads everything @HOST@:@SOURCE@ sends into /dev/null and, once that ends, connects to
# @HOST@:@ACK@ to say so. Prints "BENCH done <uptime>", then powers off.
. /etc/lockstep/setup.sh
# busybox nc: stdin EOF half-closes the connection; the peer closing ends nc.
dd if=/dev/zero bs=64k count=@BLOCKS@ 2>/dev/null | nc @HOST@ @SINK@ ||
    echo "lockstep-bench: sending to @HOST@:@SINK@ failed"
nc @HOST@ @SOURCE@ </dev/null >/dev/null ||
    echo "lockstep-bench: receiving from @HOST@:@SOURCE@ failed"
nc @HOST@ @ACK@ </dev/null >/dev/null ||
    echo "lockstep-bench: acknowledging to @HOST@:@ACK@ failed"
echo "BENCH done $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
while :; do sleep 3600; done
