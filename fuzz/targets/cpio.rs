#![no_main]
//! libFuzzer entry for the `cpio` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::cpio(data));
