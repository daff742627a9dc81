#![no_main]
//! libFuzzer entry for the `net_frames` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::net_frames(data));
