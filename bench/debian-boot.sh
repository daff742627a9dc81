#!/usr/bin/env bash
# Boot-to-login of the Debian root file system of `lockstep image build debian`, under
# lockstep and (if installed) under QEMU TCG, on the same kernel, initramfs, firmware and
# image, in one run: each VM boots a fresh overlay (a first boot: machine id, SSH host
# keys) and is timed from its start until `login:` appears on its serial console.
#   bench/debian-boot.sh [HARTS (default 1)] [REPEAT (default 1)]
# Builds the image first if it is not cached (prints the build's figures then).
set -euo pipefail
cd "$(dirname "$0")/.."
harts="${1:-1}"
repeat="${2:-1}"
cargo build --release -q -p lockstep-cli
lockstep="$PWD/target/release/lockstep"
json() { sed -n "s/^ *\"$1\": \"\(.*\)\",\?$/\1/p"; }
image_json="$("$lockstep" image build debian --json)"
image="$(json path <<<"$image_json")"
pull_json="$("$lockstep" image pull --json --no-progress)"
kernel="$(json kernel <<<"$pull_json")"
initrd="$(json initrd <<<"$pull_json")"
firmware="$(json firmware <<<"$pull_json")"
append="console=ttyS0 quiet root=/dev/vda rw"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "image: $image ($(du -h --apparent-size "$image" | cut -f1) file), $harts hart(s)"

# Starts "$@" in the background with the console in $log; prints the seconds until login:.
time_to_login() {
    local log="$1"; shift
    local start end pid
    start=$(date +%s.%N)
    "$@" >/dev/null 2>"$log.stderr" &
    pid=$!
    while ! grep -q "login:" "$log" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "the VM exited before login:; see $log" >&2
            return 1
        fi
        sleep 0.1
    done
    end=$(date +%s.%N)
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf "%.1f\n" "$(echo "$end - $start" | bc)"
}

for i in $(seq "$repeat"); do
    ov="$work/lockstep-$i.qcow2"
    "$lockstep" disk create "$ov" --size 4G --backing "$image" --backing-format qcow2 >/dev/null
    t=$(time_to_login "$work/lockstep-$i.log" "$lockstep" run --memory 1G --cpus "$harts" \
        --console "file=$work/lockstep-$i.log" --disk "path=$ov,format=qcow2,backing=any" \
        --append "$append")
    echo "lockstep  boot to login: ${t} s"
    if command -v qemu-system-riscv64 >/dev/null; then
        ov="$work/qemu-$i.qcow2"
        qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$ov"
        t=$(time_to_login "$work/qemu-$i.log" qemu-system-riscv64 -M virt -smp "$harts" -m 1G \
            -display none -monitor none -serial "file:$work/qemu-$i.log" \
            -bios "$firmware" -kernel "$kernel" -initrd "$initrd" -append "$append" \
            -drive "file=$ov,format=qcow2,if=none,id=hd" -device virtio-blk-device,drive=hd)
        echo "qemu TCG  boot to login: ${t} s"
    fi
done
