#![no_main]
//! libFuzzer entry for the `deb822` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::deb822(data));
