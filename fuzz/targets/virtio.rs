#![no_main]
//! libFuzzer entry for the `virtio` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::virtio(data));
