//! Fuzz target `pipeline`: see `lossc_fuzz::pipeline`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lossc_fuzz::pipeline(data));
