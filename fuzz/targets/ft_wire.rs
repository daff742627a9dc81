#![no_main]
//! libFuzzer entry for the `ft_wire` target (see `fuzz/README.md`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::targets::ft_wire(data));
