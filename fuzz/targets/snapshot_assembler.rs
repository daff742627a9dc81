#![no_main]
//! libFuzzer entry for the `snapshot_assembler` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::snapshot_assembler(data));
