#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| exvid_fuzz::captions(data));
