//! dynedge as a Pingora module. Placeholder crate until the Pingora issue lands: it only proves
//! that the core links natively outside proxy-wasm.

pub use dynedge_core::Config;
