//! placeholder
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    UpdateByPath,
    UpdateByQuery,
    DeleteByPath,
}
pub fn handle(
    _c: &crate::config::Config,
    _r: &crate::request::Request,
    _k: Kind,
    _e: &crate::exchange::Env,
) -> crate::exchange::Start {
    todo!()
}
