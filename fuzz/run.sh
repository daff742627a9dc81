#!/usr/bin/env bash
# The fuzz soak: runs each target under libFuzzer for MINUTES minutes, one
# at a time, niced. Usage:
#
#   fuzz/run.sh TARGET[,TARGET…]|all [MINUTES]   (default 60: the soak)
#   fuzz/run.sh --build                  (only build the instrumented targets)
#   fuzz/run.sh --list                   (the target names)
#
# Stable Rust: coverage comes from LLVM's SanitizerCoverage pass
# (-Cpasses=sancov-module) and libFuzzer from the libfuzzer-sys crate
# (see README.md). New inputs go to fuzz/work/corpus/TARGET (not
# committed), seeded from fuzz/corpus/TARGET; crashes, timeouts and OOMs
# to fuzz/work/artifacts/TARGET/; libFuzzer's log to
# fuzz/work/logs/TARGET.log, and one summary line per target to stdout.
# Exit 1 if any target found something.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
triple="$(rustc -vV | sed -n 's/^host: //p')"
target_dir="$root/target/fuzz"
bin_dir="$target_dir/$triple/release"
targets=(snapshot snapshot_assembler virtio tracked_disk loader replay_log replay_codec
  ft_wire link_frames net_frames disk_image cpio deb deb822 inrelease)

build() {
  # The instrumented build has its own target directory and a faster-to-build
  # profile (no LTO); overflow checks and debug assertions stay on, so the
  # fuzzer sees them. --target keeps the flags off build scripts and proc
  # macros.
  (cd "$root" &&
    RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    nice -n 10 cargo build --release -p lockstep-fuzz --features libfuzzer --bins \
      --target "$triple" --target-dir "$target_dir")
}

max_len() {
  case "$1" in
    snapshot) echo 131072 ;;
    snapshot_assembler | disk_image | deb | inrelease) echo 65536 ;;
    virtio | loader | replay_log | cpio | deb822) echo 16384 ;;
    tracked_disk) echo 4096 ;;
    *) echo 8192 ;;
  esac
}

run_one() {
  local name="$1" minutes="$2"
  local work="$here/work" seconds=$(($2 * 60))
  mkdir -p "$work/corpus/$name" "$work/artifacts/$name" "$work/logs"
  local log="$work/logs/$name.log"
  # -rss_limit_mb/-malloc_limit_mb: a single allocation or a process above
  # 2 GiB is reported as an OOM (a parser must not allocate what the input
  # only claims). -timeout: one input taking 10 s is a hang.
  set +e
  nice -n 19 "$bin_dir/$name" "$work/corpus/$name" "$here/corpus/$name" \
    -max_total_time="$seconds" -max_len="$(max_len "$name")" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$name/" >"$log" 2>&1
  local rc=$?
  set -e
  local stats execs secs cov ft found
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  secs="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  found="$(find "$work/artifacts/$name" -type f | wc -l)"
  echo "$name: ${minutes} min, ${execs:-?} execs, ${secs:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, exit $rc, artifacts $found"
  [ "$rc" = 0 ] && [ "$found" = 0 ]
}

case "${1:-}" in
  --build) build ;;
  --list) printf '%s\n' "${targets[@]}" ;;
  "" | -h | --help) sed -n '2,16p' "$0" ;;
  *)
    minutes="${2:-60}"
    if [ "$1" = all ]; then names=("${targets[@]}"); else IFS=, read -r -a names <<<"$1"; fi
    for name in "${names[@]}"; do
      [ -e "$here/targets/$name.rs" ] || { echo "no target $name (--list)" >&2; exit 2; }
    done
    build
    status=0
    for name in "${names[@]}"; do
      run_one "$name" "$minutes" || status=1
    done
    exit $status
    ;;
esac
