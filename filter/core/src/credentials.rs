//! Credentials as a request presents them: parsing only. Verifying them is `auth.rs`, and only
//! the pipeline (`pipeline.rs`) runs it, so a dialect reads what was presented and hands it on.

use base64::Engine;

/// Credentials as presented. Secrets are never printed.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    None,
    Bearer(String),
    /// Basic header or query parameters: a user and a password (which may be an API token).
    Password {
        user: String,
        password: String,
    },
    /// A bare secret (dynv6 `token`, path/query `secret`): an API token only.
    Secret(String),
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::None => f.write_str("None"),
            Presented::Bearer(_) => f.write_str("Bearer(***)"),
            Presented::Password { user, .. } => write!(f, "Password({user}, ***)"),
            Presented::Secret(_) => f.write_str("Secret(***)"),
        }
    }
}

impl Presented {
    /// The user name a request claims, if any (for per-user failure counting).
    pub fn user(&self) -> Option<&str> {
        match self {
            Presented::Password { user, .. } => Some(user),
            _ => None,
        }
    }
}

/// Reads credentials from headers, falling back to the given query/form values.
pub fn presented(
    authorization: Option<&str>,
    query_user: Option<&str>,
    query_password: Option<&str>,
) -> Presented {
    if let Some(value) = authorization {
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Presented::Bearer(rest.to_string());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            return match decoded.as_deref().and_then(|s| s.split_once(':')) {
                Some((user, password)) => Presented::Password {
                    user: user.to_string(),
                    password: password.to_string(),
                },
                // Malformed Basic: present but unusable, so it fails as bad credentials.
                None => Presented::Bearer(String::new()),
            };
        }
    }
    match (query_user, query_password) {
        (Some(u), Some(p)) => Presented::Password {
            user: u.to_string(),
            password: p.to_string(),
        },
        (None, Some(p)) => Presented::Secret(p.to_string()),
        _ => Presented::None,
    }
}
