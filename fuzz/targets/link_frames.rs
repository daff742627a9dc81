#![no_main]
//! libFuzzer entry for the `link_frames` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::link_frames(data));
