#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| qmig_fuzz::bodies::round_trip(data));
