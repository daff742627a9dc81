#!/usr/bin/env bash
# The whole test suite, with its set-up: the README's test command, and
# what .ci/run runs.
#
# The tests use real parts (a cross compiler for the guest programs,
# qemu-img, mkfs, dtc, network namespaces). Missing Debian packages are
# installed when this runs as root with apt-get; otherwise they are named
# and nothing runs.
set -euo pipefail
cd "$(dirname "$0")"

# Package, then the command (or, for a path, the file) that shows it is there.
needed=(
  "gcc-riscv64-linux-gnu riscv64-linux-gnu-gcc"
  "binutils-riscv64-linux-gnu riscv64-linux-gnu-objcopy"
  "device-tree-compiler dtc"
  "cpio cpio"
  "curl curl"
  "e2fsprogs mkfs.ext4"
  "iproute2 ip"
  "iputils-ping ping"
  "ethtool ethtool"
  "util-linux setpriv"
  "man-db man"
  "qemu-system-misc qemu-system-riscv64"
  "qemu-utils qemu-img"
  "protobuf-compiler protoc"
  "libprotobuf-dev /usr/include/google/protobuf/descriptor.proto"
  "etcd-server etcd"
)
missing=()
for entry in "${needed[@]}"; do
  read -r package command <<<"$entry"
  if [[ "$command" == /* ]]; then [ -e "$command" ] && continue; missing+=("$package"); continue; fi
  command -v "$command" >/dev/null 2>&1 || PATH="$PATH:/sbin:/usr/sbin" command -v "$command" >/dev/null 2>&1 || missing+=("$package")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # qemu-system-misc and qemu-utils must come from one QEMU release: a
    # newer qemu-utils from elsewhere makes a single install of both
    # unsatisfiable, so the system emulator goes first and qemu-utils after.
    first=() last=()
    for p in "${missing[@]}"; do
      case "$p" in
        qemu-utils) ;;
        # Installing the emulator may replace qemu-utils: put it back after.
        qemu-system-misc) first+=("$p"); last=(qemu-utils) ;;
        *) first+=("$p") ;;
      esac
    done
    if [[ " ${missing[*]} " == *" qemu-utils "* ]]; then last=(qemu-utils); fi
    if [ "${#first[@]}" -gt 0 ]; then
      apt-get install -y -qq --no-install-recommends "${first[@]}" >/dev/null
    fi
    if [ "${#last[@]}" -gt 0 ]; then
      apt-get install -y -qq --no-install-recommends "${last[@]}" >/dev/null
    fi
  else
    echo "test.sh: the tests need these Debian packages: ${missing[*]}" >&2
    echo "test.sh: install them (as root: apt-get install ${missing[*]}) or run this as root" >&2
    exit 1
  fi
fi
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: the network and FT tests need root (TAP devices, namespaces); run as root" >&2
  exit 1
fi

# Everything, with the translator as the engine (x86-64's default).
cargo test --release --workspace "$@"
# The Linux suites again under the interpreter: both engines must pass.
LOCKSTEP_CPU=interp cargo test --release -p lockstep-cli \
  --test boot --test replay --test ft --test vm --test exit_codes "$@"
