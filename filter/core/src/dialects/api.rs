//! placeholder
pub fn serves(_p: &str) -> bool {
    false
}
pub fn handle(
    _c: &crate::config::Config,
    _r: &crate::request::Request,
    _e: &crate::exchange::Env,
) -> crate::exchange::Start {
    todo!()
}
