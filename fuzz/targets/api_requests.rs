#![no_main]
//! libFuzzer entry for the `api_requests` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::api_requests(data));
