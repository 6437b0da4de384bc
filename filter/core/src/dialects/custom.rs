//! placeholder
use serde::Deserialize;
#[derive(Deserialize)]
pub struct RawEndpoint {}
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub path: String,
}
pub fn compile(_r: Vec<RawEndpoint>) -> Result<Vec<Endpoint>, crate::config::ConfigError> {
    Ok(vec![])
}
pub fn handle(
    _c: &crate::config::Config,
    _r: &crate::request::Request,
    _i: usize,
    _e: &crate::exchange::Env,
) -> crate::exchange::Start {
    todo!()
}
