#![no_main]
//! libFuzzer entry for the `loader` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::loader(data));
