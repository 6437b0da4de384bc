//! What a credential may be used for.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Update,
    Txt,
    Read,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Update, Scope::Txt, Scope::Read, Scope::Admin];
    pub fn name(self) -> &'static str {
        match self {
            Scope::Update => "update",
            Scope::Txt => "txt",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}
