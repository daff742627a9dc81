#![no_main]
//! libFuzzer entry for the `disk_image` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::disk_image(data));
