//! See `dynedge_core::fuzzing::addr` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynedge_core::fuzzing::addr(data));
