#![no_main]
//! libFuzzer entry for the `inrelease` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::inrelease(data));
