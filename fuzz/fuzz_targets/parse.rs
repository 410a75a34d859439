//! Fuzz target `parse`: see `lossc_fuzz::parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lossc_fuzz::parse(data));
