#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vn_core::fuzzing::handshake(data));
