//! Fuzz target `data`: see `lossc_fuzz::data`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lossc_fuzz::data(data));
