//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod dns_servers;
pub mod http1;
