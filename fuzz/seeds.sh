#!/usr/bin/env bash
# Usage: fuzz/seeds.sh [--no-cargo]   (--no-cargo: only the tools' seeds)
#
# Regenerates the committed seed corpora in fuzz/corpus/ from real files:
# the product's own writers (examples/seeds.rs: snapshot, live-save pieces,
# replay log, FT messages, link stream, tracked-disk record, boot images,
# virtio driver sequences) and other tools' output: cpio(1), dpkg-deb(1),
# qemu-img(1)/qemu-io(1), and Debian's own InRelease and Packages stanzas
# as apt fetched them (/var/lib/apt/lists, apt-cache; run `apt-get update`
# first). Seeds are kept small (libFuzzer mutates whole inputs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
corpus="$here/corpus"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

[ "${1:-}" = --no-cargo ] ||
  (cd "$here/.." && cargo run -q --release -p lockstep-fuzz --example seeds -- "$corpus")

# cpio: newc archives as the initramfs builder writes them.
mkdir -p "$corpus/cpio" "$tmp/root/etc/lockstep" "$tmp/root/bin"
printf '#!/bin/sh\necho hi\n' >"$tmp/root/init"
chmod 755 "$tmp/root/init"
printf 'eth0\n' >"$tmp/root/etc/lockstep/nics"
ln -sf busybox "$tmp/root/bin/sh"
(cd "$tmp/root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible >"$corpus/cpio/newc")
(cd "$tmp/root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -c --reproducible >"$corpus/cpio/newc-crc" 2>/dev/null) ||
  rm -f "$corpus/cpio/newc-crc"

# deb: packages built by dpkg-deb with each compressor pull uses.
mkdir -p "$corpus/deb" "$tmp/pkg/DEBIAN" "$tmp/pkg/usr/lib/lockstep"
cat >"$tmp/pkg/DEBIAN/control" <<'CTRL'
Package: lockstep-seed
Version: 1.0-1
Architecture: riscv64
Maintainer: Lockstep <nobody@localhost>
Description: fuzz seed
CTRL
printf 'firmware\n' >"$tmp/pkg/usr/lib/lockstep/fw_dynamic.bin"
for z in xz gzip zstd none; do
  SOURCE_DATE_EPOCH=0 dpkg-deb --root-owner-group -Z"$z" --build "$tmp/pkg" "$corpus/deb/pkg-$z.deb" >/dev/null
done

# disk_image: qcow2 images from qemu-img (small clusters keep them small),
# one with data written by qemu-io, one overlay naming a backing file, and
# a raw image.
mkdir -p "$corpus/disk_image"
qemu-img create -q -f qcow2 -o cluster_size=512 "$tmp/empty.qcow2" 1M
qemu-img create -q -f qcow2 -o cluster_size=512 "$tmp/data.qcow2" 1M
qemu-io -f qcow2 -c 'write -P 0x5a 4096 1024' -c 'write -z 8192 512' "$tmp/data.qcow2" >/dev/null
head -c 65536 /dev/zero >"$tmp/base.raw"
(cd "$tmp" && qemu-img create -q -f qcow2 -o cluster_size=1024 -b base.raw -F raw overlay.qcow2 1M)
qemu-img create -q -f qcow2 -o cluster_size=4096,compat=0.10 "$tmp/v2.qcow2" 64K
for f in empty data overlay v2; do cp "$tmp/$f.qcow2" "$corpus/disk_image/$f.qcow2"; done
head -c 8192 /dev/zero | tr '\0' 'r' >"$corpus/disk_image/raw"

# deb822 and inrelease: Debian's own files as apt fetched them.
mkdir -p "$corpus/deb822" "$corpus/inrelease"
for f in /var/lib/apt/lists/*_InRelease; do
  size="$(stat -c %s "$f")"
  name="$(basename "$f" | sed 's/.*_dists_//')"
  if [ "$size" -le 65536 ]; then cp "$f" "$corpus/inrelease/$name"; fi
  # The signed text alone, cut to its first 12 KiB, as a Release.
  sed -n '/^Origin:/,/^-----BEGIN PGP SIGNATURE/p' "$f" >"$tmp/release"
  head -c 12288 "$tmp/release" >"$corpus/deb822/Release-$name"
done
apt-cache show busybox-static opensbi linux-image-amd64 >"$tmp/packages" 2>/dev/null || true
head -c 12000 "$tmp/packages" >"$corpus/deb822/Packages-apt"
apt-cache showsrc busybox >"$tmp/sources" 2>/dev/null || true
head -c 8000 "$tmp/sources" >"$corpus/deb822/Sources-apt"
find "$corpus" -type f -empty -delete
echo "seeds: $(find "$corpus" -type f | wc -l) files, $(du -sh "$corpus" | cut -f1)"
