#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| exvid_fuzz::playback_grant(data));
