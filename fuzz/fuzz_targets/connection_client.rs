//! A client `Connection` fed arbitrary server bytes in arbitrary chunks;
//! see `tether_fuzz::run_connection` for the input layout and invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::Role;

fuzz_target!(|data: &[u8]| tether_fuzz::run_connection(Role::Client, data));
