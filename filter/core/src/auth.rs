//! Credentials: which ones a request presents, and who they prove it is.
//!
//! Order: Bearer token, then Basic, then query `username`/`password`. The first
//! form present decides; a wrong Bearer token does not fall through to a query password.
//! API tokens are high-entropy, so a SHA-256 lookup is enough; passwords are Argon2id, and a
//! successful verification is cached in the KV under a keyed hash so routers that ping every
//! minute do not pay Argon2 each time.

use std::net::IpAddr;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;

pub(crate) use crate::config::CacheMac;
use crate::config::{Config, Scope, User};
pub(crate) use crate::credentials::Presented;
pub(crate) use crate::hex::hex;
pub(crate) use crate::identity::{may_update, Identity};
use crate::kv::{keys, KvView, KvWrite};
use crate::names::Fqdn;
use crate::token_rules::{RuleRefusal, TokenRules};
pub(crate) use crate::tokens::{stored_scopes, token_hash, token_last_used};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Nothing presented: the caller may answer with a 401 challenge.
    Missing,
    /// Presented but wrong, unknown, inactive or malformed.
    Bad,
    /// A runtime token that was revoked (`/api/tokens`).
    Revoked,
    /// A runtime token past its expiry.
    Expired,
}

/// The result of authentication, with the KV writes it wants (a verification cache entry).
#[derive(Debug)]
pub struct AuthOutcome {
    pub result: Result<Identity, AuthError>,
    pub writes: Vec<KvWrite>,
    /// Which of a token's rules refused it, and the token's id (for the audit log; the reply
    /// says only `Bad`/`Expired`).
    pub refusal: Option<(RuleRefusal, String)>,
}

/// Who `p` proves to be, from `client` (the address the pipeline derived) at `now_s`.
pub fn authenticate(
    cfg: &Config,
    p: &Presented,
    kv: &dyn KvView,
    client: Option<IpAddr>,
    now_s: u64,
) -> AuthOutcome {
    let done = |found: Result<TokenFound, AuthError>| match found {
        Ok(t) => token_outcome(t, kv, client, now_s),
        Err(e) => AuthOutcome {
            result: Err(e),
            writes: vec![],
            refusal: None,
        },
    };
    match p {
        Presented::None => done(Err(AuthError::Missing)),
        Presented::Bearer(token) | Presented::Secret(token) => {
            done(token_identity(cfg, token, kv, now_s))
        }
        Presented::Password { user, password } => {
            // A password whose verification is cached is that user's password: skip hashing
            // it as a token and looking it up (a KV read), which every request paid before.
            if let Some(u) = cfg.users.get(user).filter(|u| u.active) {
                if cache_fresh(&u.name, u.cache_mac(), password, kv, now_s) {
                    return AuthOutcome {
                        result: Ok(user_identity(u)),
                        writes: vec![],
                        refusal: None,
                    };
                }
            }
            // ApertoDNS clients send `anything:{token}`: a token password ignores the user.
            if let Ok(t) = token_identity(cfg, password, kv, now_s) {
                return done(Ok(t));
            }
            password_identity(cfg, user, password, kv, now_s)
        }
    }
}

/// A token that matched, before its rules are checked.
struct TokenFound {
    identity: Identity,
    /// A runtime token: its record and its uses live in the same KV.
    runtime: bool,
}

/// The token's rules (a subnet outside answers like a wrong token, so a stolen token used
/// elsewhere learns nothing; age and disuse like an expired one), then its last use.
fn token_outcome(
    t: TokenFound,
    kv: &dyn KvView,
    client: Option<IpAddr>,
    now_s: u64,
) -> AuthOutcome {
    let id = t.identity;
    let tid = id.token_id.as_deref().unwrap_or_default();
    let last = token_last_used(kv, tid);
    if let Err(r) = id.rules.check(client, now_s, last, t.runtime) {
        return AuthOutcome {
            result: Err(match r {
                RuleRefusal::Subnet => AuthError::Bad,
                RuleRefusal::MaxAge | RuleRefusal::Unused => AuthError::Expired,
            }),
            writes: vec![],
            refusal: Some((r, tid.to_string())),
        };
    }
    let stale = last.is_none_or(|l| now_s.saturating_sub(l) >= id.rules.touch_interval_s());
    let writes = if stale {
        vec![KvWrite::put(
            keys::token_used(tid),
            now_s.to_string().into_bytes(),
        )]
    } else {
        vec![]
    };
    AuthOutcome {
        result: Ok(id),
        writes,
        refusal: None,
    }
}

/// A static token from the configuration, else a runtime one from the KV (`tokens.rs`).
fn token_identity(
    cfg: &Config,
    token: &str,
    kv: &dyn KvView,
    now_s: u64,
) -> Result<TokenFound, AuthError> {
    if token.is_empty() || token.len() > 512 {
        return Err(AuthError::Bad);
    }
    let hash = token_hash(token);
    if let Some(t) = cfg.tokens.get(&hash) {
        let user = cfg.users.get(&t.user).ok_or(AuthError::Bad)?;
        return (t.active && user.active)
            .then(|| TokenFound {
                identity: Identity {
                    user: t.user.clone(),
                    token_id: Some(t.id.clone()),
                    scopes: t.scopes.clone(),
                    only_hosts: t.hosts.clone(),
                    rules: t.rules.clone(),
                },
                runtime: false,
            })
            .ok_or(AuthError::Bad);
    }
    let t = crate::tokens::lookup(kv, &hash).ok_or(AuthError::Bad)?;
    if !cfg.users.get(&t.user).is_some_and(|u| u.active) {
        return Err(AuthError::Bad);
    }
    if t.revoked {
        return Err(AuthError::Revoked);
    }
    if t.expires_ms
        .is_some_and(|e| e <= now_s.saturating_mul(1000))
    {
        return Err(AuthError::Expired);
    }
    // A record whose rules do not compile (written by hand?) refuses: fail closed.
    let rules = t.compiled_rules().ok_or(AuthError::Bad)?;
    Ok(TokenFound {
        identity: Identity {
            user: t.user.clone(),
            token_id: Some(t.id.clone()),
            scopes: stored_scopes(&t),
            only_hosts: t.host_set(),
            rules,
        },
        runtime: true,
    })
}

fn password_identity(
    cfg: &Config,
    user: &str,
    password: &str,
    kv: &dyn KvView,
    now_s: u64,
) -> AuthOutcome {
    let bad = AuthOutcome {
        result: Err(AuthError::Bad),
        writes: vec![],
        refusal: None,
    };
    let Some(u) = cfg.users.get(user).filter(|u| u.active) else {
        return bad;
    };
    if password.is_empty() || password.len() > 1024 {
        return bad;
    }
    let identity = user_identity(u);
    match verify_cached(
        cfg,
        &u.name,
        &u.password_hash.0,
        u.cache_mac(),
        password,
        kv,
        now_s,
    ) {
        Some(writes) => AuthOutcome {
            result: Ok(identity),
            writes,
            refusal: None,
        },
        None => bad,
    }
}

/// Who a configured user's own password proves: the user, with every non-admin scope.
fn user_identity(u: &User) -> Identity {
    Identity {
        user: u.name.clone(),
        token_id: None,
        scopes: [Scope::Update, Scope::Txt, Scope::Read]
            .into_iter()
            .collect(),
        only_hosts: None,
        rules: TokenRules::default(),
    }
}

/// Whether a cached success for (user, PHC, password) is still fresh.
fn cache_fresh(
    cache_user: &str,
    mac: &CacheMac,
    password: &str,
    kv: &dyn KvView,
    now_s: u64,
) -> bool {
    if password.is_empty() || password.len() > 1024 {
        return false;
    }
    let key = keys::auth_cache(cache_user, &mac.tag(password));
    kv.get(&key)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|until| until > now_s)
}

/// Argon2 verification of `password` against `phc`, skipped while a cached success for the same
/// (user, PHC, password) is fresh; on success, the cache entry to write (if any). Shared by
/// configured users and the credentials registered at runtime (acme-dns accounts). `mac` is
/// [`CacheMac::new`] of `phc`.
pub fn verify_cached(
    cfg: &Config,
    cache_user: &str,
    phc: &str,
    mac: &CacheMac,
    password: &str,
    kv: &dyn KvView,
    now_s: u64,
) -> Option<Vec<KvWrite>> {
    if password.is_empty() || password.len() > 1024 {
        return None;
    }
    if cache_fresh(cache_user, mac, password, kv, now_s) {
        return Some(vec![]);
    }
    if !verify_password(phc, password) {
        return None;
    }
    Some(vec![KvWrite::put(
        keys::auth_cache(cache_user, &mac.tag(password)),
        now_s
            .saturating_add(cfg.auth_cache_ttl_s)
            .to_string()
            .into_bytes(),
    )])
}

#[cfg(any(test, feature = "testing"))]
thread_local! {
    static ARGON2_RUNS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many Argon2 verifications this thread has run (tests: proof that a refusal came first).
#[cfg(test)]
pub fn argon2_runs() -> u64 {
    ARGON2_RUNS.with(std::cell::Cell::get)
}

/// Argon2 verification; the comparison inside `argon2` is constant-time.
pub fn verify_password(phc: &str, password: &str) -> bool {
    #[cfg(any(test, feature = "testing"))]
    ARGON2_RUNS.with(|c| c.set(c.get().saturating_add(1)));
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// May this identity write `rtype` at `name` (a token's per-host, per-type policies)? Ownership
/// is [`may_update`]'s.
pub fn may_write(id: &Identity, name: &Fqdn, rtype: crate::backends::RrType) -> bool {
    id.rules.permits(name, rtype.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::demo;
    use crate::credentials::presented;
    use crate::kv::MemoryKv;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use std::collections::BTreeSet;

    const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(
            token_hash(TOKEN),
            demo().tokens.keys().next().cloned().unwrap_or_default()
        );
    }

    #[test]
    fn bearer_wins_over_basic_and_query() {
        let p = presented(Some("Bearer abc"), Some("demo"), Some("demo-password"));
        assert_eq!(p, Presented::Bearer("abc".into()));
        let p = presented(Some(&basic("u", "p:w")), Some("demo"), Some("x"));
        assert_eq!(
            p,
            Presented::Password {
                user: "u".into(),
                password: "p:w".into()
            }
        );
        let p = presented(None, Some("demo"), Some("x"));
        assert!(matches!(p, Presented::Password { .. }));
        assert_eq!(presented(None, None, None), Presented::None);
    }

    #[test]
    fn malformed_basic_is_bad_not_missing() {
        let cfg = demo();
        let kv = MemoryKv::default();
        for header in ["Basic !!!", "Basic ZGVtbw==", "Basic"] {
            let p = presented(Some(header), None, None);
            assert_eq!(
                authenticate(&cfg, &p, &kv, None, 0).result,
                Err(AuthError::Bad),
                "{header}"
            );
        }
    }

    #[test]
    fn token_as_bearer_or_as_basic_password_identifies_its_user() {
        let cfg = demo();
        let kv = MemoryKv::default();
        for p in [
            Presented::Bearer(TOKEN.into()),
            Presented::Password {
                user: "whatever".into(),
                password: TOKEN.into(),
            },
            Presented::Secret(TOKEN.into()),
        ] {
            let id = authenticate(&cfg, &p, &kv, None, 0).result.unwrap();
            assert_eq!(id.user, "demo");
            assert_eq!(id.token_id.as_deref(), Some("demo-all"));
        }
        let wrong = Presented::Bearer(format!("{TOKEN}x"));
        assert_eq!(
            authenticate(&cfg, &wrong, &kv, None, 0).result,
            Err(AuthError::Bad)
        );
    }

    #[test]
    fn a_cached_password_is_not_also_looked_up_as_a_token() {
        struct Reads<'a>(&'a MemoryKv, std::cell::RefCell<Vec<String>>);
        impl KvView for Reads<'_> {
            fn get(&self, key: &str) -> Option<Vec<u8>> {
                self.1.borrow_mut().push(key.to_string());
                self.0.get(key)
            }
        }
        let cfg = demo();
        let kv = MemoryKv::default();
        let p = Presented::Password {
            user: "demo".into(),
            password: "demo-password".into(),
        };
        kv.apply(&authenticate(&cfg, &p, &kv, None, 1000).writes);
        let reads = Reads(&kv, Default::default());
        let warm = authenticate(&cfg, &p, &reads, None, 1001);
        assert!(warm
            .result
            .is_ok_and(|id| id.user == "demo" && id.token_id.is_none()));
        assert_eq!(
            reads.1.borrow().len(),
            1,
            "one read, the auth cache: {:?}",
            reads.1.borrow()
        );
    }

    #[test]
    fn the_cache_tag_is_keyed_once_per_user_and_names_the_same_entry_as_before() {
        let cfg = demo();
        let u = cfg.users.get("demo").unwrap();
        assert!(
            u.cache_key.get().is_none(),
            "keyed on first use, not at configuration"
        );
        // Keyed per request, as before the key was kept: entries written then still hit.
        let mut per_request = Hmac::<Sha256>::new_from_slice(u.password_hash.0.as_bytes()).unwrap();
        per_request.update(b"demo-password");
        let expected = hex(&per_request.finalize().into_bytes());
        assert_eq!(u.cache_mac().tag("demo-password"), expected);
        assert!(u.cache_key.get().is_some(), "kept for the next request");
        // The kept state is cloned per use, never advanced by one.
        assert_eq!(u.cache_mac().tag("demo-password"), expected);
        assert_ne!(u.cache_mac().tag("demo-passwore"), expected);
        assert_ne!(CacheMac::new("another phc").tag("demo-password"), expected);
        assert!(!format!("{u:?}").contains(&expected));
        assert_eq!(format!("{:?}", u.cache_mac()), "CacheMac(***)");
    }

    #[test]
    fn password_verification_is_cached_and_the_cache_expires() {
        let cfg = demo();
        let kv = MemoryKv::default();
        let p = Presented::Password {
            user: "demo".into(),
            password: "demo-password".into(),
        };
        let first = authenticate(&cfg, &p, &kv, None, 1000);
        assert!(first.result.is_ok());
        assert_eq!(first.writes.len(), 1, "a verified password is cached");
        kv.apply(&first.writes);
        let second = authenticate(&cfg, &p, &kv, None, 1001);
        assert!(second.result.is_ok());
        assert!(
            second.writes.is_empty(),
            "cache hit skips Argon2 and writes nothing"
        );
        let later = authenticate(&cfg, &p, &kv, None, 1000 + cfg.auth_cache_ttl_s + 1);
        assert_eq!(
            later.writes.len(),
            1,
            "expired entry means a fresh verification"
        );
    }

    #[test]
    fn wrong_password_is_bad_and_never_cached() {
        let cfg = demo();
        let kv = MemoryKv::default();
        let p = Presented::Password {
            user: "demo".into(),
            password: "demo-passwore".into(),
        };
        let out = authenticate(&cfg, &p, &kv, None, 0);
        assert_eq!(out.result, Err(AuthError::Bad));
        assert!(out.writes.is_empty());
        let nobody = Presented::Password {
            user: "nobody".into(),
            password: "demo-password".into(),
        };
        assert_eq!(
            authenticate(&cfg, &nobody, &kv, None, 0).result,
            Err(AuthError::Bad)
        );
    }

    #[test]
    fn ownership_is_exact_and_token_restrictions_apply() {
        let cfg = demo();
        let mut id = authenticate(
            &cfg,
            &Presented::Bearer(TOKEN.into()),
            &MemoryKv::default(),
            None,
            0,
        )
        .result
        .unwrap();
        let home = Fqdn::parse("home.dyn.example.test").unwrap();
        let neighbour = Fqdn::parse("neighbour.dyn.example.test").unwrap();
        assert!(may_update(&cfg, &id, &home));
        assert!(!may_update(&cfg, &id, &neighbour));
        id.only_hosts = Some(BTreeSet::new());
        assert!(!may_update(&cfg, &id, &home));
    }
}
