#![no_main]
//! libFuzzer entry for the `tracked_disk` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::tracked_disk(data));
