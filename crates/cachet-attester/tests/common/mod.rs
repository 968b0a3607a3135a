//! Shared test support for the attester's integration tests.
#![allow(dead_code)]

pub mod fake_tsm;
pub mod sender;
