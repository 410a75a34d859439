//! Fuzz target `check`: see `lossc_fuzz::check`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lossc_fuzz::check(data));
