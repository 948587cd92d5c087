#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| qmig_fuzz::replay_body::replay(data));
