//! Who an authenticated request acts as, and what it may change. The pipeline builds an
//! [`Identity`] (`pipeline.rs`); dialects only ask it questions.

use std::collections::BTreeSet;

use crate::config::{Config, Scope};
use crate::names::Fqdn;
use crate::token_rules::TokenRules;

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// Set when an API token authenticated the request.
    pub token_id: Option<String>,
    pub scopes: BTreeSet<Scope>,
    /// A token's host restriction.
    pub only_hosts: Option<BTreeSet<Fqdn>>,
    /// A token's rules (`tokens::TokenRules`); none for passwords.
    pub rules: TokenRules,
}

/// May this identity change `name`? `nohost` must not reveal whether the host exists.
pub fn may_update(cfg: &Config, id: &Identity, name: &Fqdn) -> bool {
    let Some(user) = cfg.users.get(&id.user) else {
        return false;
    };
    user.owns(name)
        && id
            .only_hosts
            .as_ref()
            .is_none_or(|only| only.contains(name))
        && id.rules.permits_host(name)
}
