#![no_main]
//! libFuzzer entry for the `deb` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::deb(data));
