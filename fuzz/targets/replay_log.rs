#![no_main]
//! libFuzzer entry for the `replay_log` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::replay_log(data));
