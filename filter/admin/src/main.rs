//! `dynedge admin ...`: manage users, tokens and host grants in the etcd store.
//!
//! Records are the same JSON objects as the plugin configuration's `users[]`/`tokens[]`, one
//! per key (`store::etcd`). Every change is validated by compiling the whole resulting
//! configuration with the core (with `--config`, against its zones too) and written with a
//! compare-on-revision transaction, so two admins never silently overwrite each other.
//! Passwords are read from stdin; no stored hash or token is ever printed.
//! `dynedge validate FILE` and `dynedge schema` check a plugin configuration (`validate.rs`).

mod etcd_http;
mod password;
mod validate;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::ExitCode;

use dynedge_core::adapter::etcd::{self as store, EtcdStore, Kv};
use dynedge_core::{CalloutResult, Config};
use serde_json::{json, Value};

use etcd_http::Etcd;

const USAGE: &str =
    "usage: dynedge validate FILE   (plugin configuration .json, or WasmPlugin .yaml)
       dynedge schema          (the configuration's JSON Schema)
       dynedge admin [--etcd URLS] [--prefix P] [--config PLUGIN.json] COMMAND
  user add NAME [--host FQDN]... [--zone ZONE]...   (password on stdin)
  user passwd NAME                                  (new password on stdin)
  user disable NAME | user enable NAME | user list
  token issue USER [--id ID] [--scope S]... [--host FQDN]...   (prints the token once)
              [--subnet CIDR]... [--max-age PERIOD] [--max-unused PERIOD]
              [--policy HOST=TYPES]...   (PERIOD: 30d, 12h, 15m, 3600s or seconds;
                                          HOST * = every host; TYPES A,AAAA,TXT)
  token revoke ID | token list
  host grant USER FQDN | host revoke USER FQDN
  export OUT.json          (users and tokens, with their hashes, to a 0600 file)
  import IN.json           (users and tokens of a plugin configuration into etcd)
environment: DYNEDGE_ETCD (default http://127.0.0.1:2379), DYNEDGE_ETCD_PREFIX (/dynedge/)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = validate::command(&args) {
        return code;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dynedge: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Admin {
    etcd: Etcd,
    store: EtcdStore,
    /// The plugin configuration to validate against (zones, backends); `None` = structure only.
    base: Option<Vec<u8>>,
}

/// Takes every `--name VALUE` out of `args`.
fn take_all(args: &mut Vec<String>, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(i) = args.iter().position(|a| a == name) {
        if i + 1 < args.len() {
            out.push(args.remove(i + 1));
        }
        args.remove(i);
    }
    out
}

fn take_one(args: &mut Vec<String>, name: &str) -> Option<String> {
    take_all(args, name).pop()
}

fn run(mut args: Vec<String>) -> Result<(), String> {
    if args.first().map(String::as_str) != Some("admin") {
        return Err(USAGE.into());
    }
    args.remove(0);
    let endpoints = take_one(&mut args, "--etcd")
        .or_else(|| std::env::var("DYNEDGE_ETCD").ok())
        .unwrap_or_else(|| "http://127.0.0.1:2379".into());
    let prefix = take_one(&mut args, "--prefix")
        .or_else(|| std::env::var("DYNEDGE_ETCD_PREFIX").ok())
        .unwrap_or_else(|| "/dynedge/".into());
    let base = match take_one(&mut args, "--config") {
        Some(path) => Some(std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?),
        None => None,
    };
    let store = EtcdStore {
        cluster: String::new(),
        authority: String::new(),
        prefix,
        ttl_s: 5,
        max_stale_s: None,
        timeout_ms: 3000,
    };
    let admin = Admin {
        etcd: Etcd::new(&endpoints)?,
        store,
        base,
    };
    let owned = args.clone();
    let words: Vec<&str> = owned.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["user", "add", name, ..] => admin.user_add(name, &mut args),
        ["user", "passwd", name] => admin.user_passwd(name),
        ["user", "disable", name] => admin.user_active(name, false),
        ["user", "enable", name] => admin.user_active(name, true),
        ["user", "list"] => admin.user_list(),
        ["token", "issue", user, ..] => admin.token_issue(user, &mut args),
        ["token", "revoke", id] => admin.token_revoke(id),
        ["token", "list"] => admin.token_list(),
        ["host", "grant", user, host] => admin.host(user, host, true),
        ["host", "revoke", user, host] => admin.host(user, host, false),
        ["export", out] => admin.export(out),
        ["import", path] => admin.import(path),
        _ => Err(USAGE.into()),
    }
}

fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut buf = vec![0; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(buf)
}

fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&random_bytes(16)?).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("argon2: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Users and tokens as stored, with each key's revision for the compare.
struct Snapshot {
    users: BTreeMap<String, (Value, i64)>,
    tokens: BTreeMap<String, (Value, i64)>,
}

impl Admin {
    fn call(&self, c: &dynedge_core::Callout) -> Result<CalloutResult, String> {
        match self.etcd.perform(c) {
            CalloutResult::Failed(e) => Err(format!("etcd unreachable: {e}")),
            r => Ok(r),
        }
    }

    fn snapshot(&self) -> Result<Snapshot, String> {
        let r = self.call(&store::sync_call(&self.store))?;
        let t = store::parse_txn(&r).map_err(|e| e.message)?;
        let index = |kvs: Option<&Vec<Kv>>, field: &str| -> Result<_, String> {
            let mut out = BTreeMap::new();
            for kv in kvs.map_or(&[][..], |v| v) {
                let v: Value = serde_json::from_slice(&kv.value)
                    .map_err(|e| format!("etcd key {}: {e}", kv.key))?;
                let name = v[field].as_str().unwrap_or_default().to_string();
                out.insert(name, (v, kv.mod_revision));
            }
            Ok(out)
        };
        Ok(Snapshot {
            users: index(t.ranges.first(), "name")?,
            tokens: index(t.ranges.get(1), "id")?,
        })
    }

    /// Compiles the configuration these users and tokens would make, as every gateway will.
    fn validate(&self, snap: &Snapshot) -> Result<(), String> {
        let mut cfg: Value = match &self.base {
            Some(raw) => serde_json::from_slice(raw).map_err(|e| format!("--config: {e}"))?,
            None => json!({}),
        };
        cfg["users"] = Value::Array(snap.users.values().map(|(v, _)| v.clone()).collect());
        cfg["tokens"] = Value::Array(snap.tokens.values().map(|(v, _)| v.clone()).collect());
        if self.base.is_none() {
            // Without the zones, grants cannot be checked against them: check structure only.
            let zones: std::collections::BTreeSet<String> = snap
                .users
                .values()
                .flat_map(|(u, _)| {
                    let hosts = u["hosts"].as_array().cloned().unwrap_or_default();
                    let zones = u["zones"].as_array().cloned().unwrap_or_default();
                    hosts.into_iter().chain(zones)
                })
                .filter_map(|h| h.as_str().map(str::to_string))
                .collect();
            cfg["backends"] = json!({"x": {"type": "powerdns", "cluster": "x", "authority": "x",
                                            "api_key": "x"}});
            cfg["zones"] = zones
                .into_iter()
                .map(|z| json!({"name": z, "backend": "x"}))
                .collect();
        }
        Config::from_json(cfg.to_string().as_bytes())
            .map(|_| ())
            .map_err(|e| format!("refused: {e}"))
    }

    /// Writes one record if its key is still at `rev` (0 = must not exist yet).
    fn cas(&self, key: &str, rev: i64, value: &Value) -> Result<(), String> {
        let c = store::compare_and_put(&self.store, key, rev, value.to_string().as_bytes());
        let t = store::parse_txn(&self.call(&c)?).map_err(|e| e.message)?;
        if t.succeeded {
            Ok(())
        } else {
            Err(format!(
                "{key} changed meanwhile (another admin?): nothing written, try again"
            ))
        }
    }

    fn user_add(&self, name: &str, args: &mut Vec<String>) -> Result<(), String> {
        let hosts = take_all(args, "--host");
        let zones = take_all(args, "--zone");
        let mut snap = self.snapshot()?;
        if snap.users.contains_key(name) {
            return Err(format!(
                "user '{name}' exists (user passwd to change the password)"
            ));
        }
        let pw = read_password()?;
        password::check(name, &pw)?;
        let user = json!({"name": name, "password_hash": hash_password(&pw)?,
                          "hosts": hosts, "zones": zones, "active": true});
        snap.users.insert(name.into(), (user.clone(), 0));
        self.validate(&snap)?;
        self.cas(&store::user_key(&self.store, name), 0, &user)?;
        println!("user '{name}' added");
        Ok(())
    }

    fn edit_user(
        &self,
        name: &str,
        edit: impl FnOnce(&mut Value) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut snap = self.snapshot()?;
        let Some((mut user, rev)) = snap.users.get(name).cloned() else {
            return Err(format!("no user '{name}'"));
        };
        edit(&mut user)?;
        snap.users.insert(name.into(), (user.clone(), rev));
        self.validate(&snap)?;
        self.cas(&store::user_key(&self.store, name), rev, &user)
    }

    fn user_passwd(&self, name: &str) -> Result<(), String> {
        let pw = read_password()?;
        password::check(name, &pw)?;
        let phc = hash_password(&pw)?;
        self.edit_user(name, |u| {
            u["password_hash"] = phc.into();
            Ok(())
        })?;
        println!("password of '{name}' changed");
        Ok(())
    }

    fn user_active(&self, name: &str, active: bool) -> Result<(), String> {
        self.edit_user(name, |u| {
            u["active"] = active.into();
            Ok(())
        })?;
        println!(
            "user '{name}' {}",
            if active { "enabled" } else { "disabled" }
        );
        Ok(())
    }

    fn user_list(&self) -> Result<(), String> {
        for (name, (u, _)) in self.snapshot()?.users {
            let active = u["active"].as_bool().unwrap_or(true);
            println!(
                "{name}\tactive={active}\thosts={}\tzones={}",
                u["hosts"], u["zones"]
            );
        }
        Ok(())
    }

    fn host(&self, user: &str, host: &str, grant: bool) -> Result<(), String> {
        let fqdn = dynedge_core::adapter::Fqdn::parse(host).map_err(|e| format!("{host}: {e}"))?;
        self.edit_user(user, |u| {
            let mut hosts: Vec<String> = u["hosts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|h| h.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            hosts.retain(|h| h != fqdn.as_str());
            if grant {
                hosts.push(fqdn.to_string());
            }
            u["hosts"] = json!(hosts);
            Ok(())
        })?;
        println!(
            "{} {fqdn} {} '{user}'",
            if grant { "granted" } else { "revoked" },
            if grant { "to" } else { "from" }
        );
        Ok(())
    }

    fn token_issue(&self, user: &str, args: &mut Vec<String>) -> Result<(), String> {
        let secret = format!("dynedge_{}", hex(&random_bytes(24)?));
        let id = match take_one(args, "--id") {
            Some(id) => id,
            None => format!("{user}-{}", hex(&random_bytes(4)?)),
        };
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| format!("clock: {e}"))?
            .as_secs();
        let token = token_record(
            user,
            &id,
            &dynedge_core::adapter::token_hash(&secret),
            args,
            now_s,
        )?;
        let mut snap = self.snapshot()?;
        if snap.tokens.contains_key(&id) {
            return Err(format!("token id '{id}' exists"));
        }
        snap.tokens.insert(id.clone(), (token.clone(), 0));
        self.validate(&snap)?;
        self.cas(&store::token_key(&self.store, &id), 0, &token)?;
        // Shown once: only its SHA-256 is stored.
        println!("token {id} for '{user}' (shown once, store it now):\n{secret}");
        Ok(())
    }

    fn token_revoke(&self, id: &str) -> Result<(), String> {
        let snap = self.snapshot()?;
        if !snap.tokens.contains_key(id) {
            return Err(format!("no token '{id}'"));
        }
        let r = self.call(&store::delete(
            &self.store,
            &store::token_key(&self.store, id),
        ))?;
        if let CalloutResult::Response { status: 200, .. } = r {
            println!("token {id} revoked");
            Ok(())
        } else {
            Err(format!("etcd refused the delete: {r:?}"))
        }
    }

    fn token_list(&self) -> Result<(), String> {
        for (id, (t, _)) in self.snapshot()?.tokens {
            let mut line = format!(
                "{id}\tuser={}\tscopes={}\thosts={}\tactive={}",
                t["user"].as_str().unwrap_or(""),
                t["scopes"],
                t.get("hosts").unwrap_or(&Value::Null),
                t["active"].as_bool().unwrap_or(true)
            );
            for field in [
                "allowed_subnets",
                "created_s",
                "max_age_s",
                "max_unused_period_s",
                "policies",
            ] {
                if let Some(v) = t.get(field) {
                    line.push_str(&format!("\t{field}={v}"));
                }
            }
            println!("{line}");
        }
        Ok(())
    }

    fn export(&self, out: &str) -> Result<(), String> {
        let snap = self.snapshot()?;
        let users: Vec<&Value> = snap.users.values().map(|(v, _)| v).collect();
        let tokens: Vec<&Value> = snap.tokens.values().map(|(v, _)| v).collect();
        let doc = json!({"users": users, "tokens": tokens});
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        write_private(out, text.as_bytes())?;
        println!(
            "exported {} user(s), {} token(s) to {out}",
            users.len(),
            tokens.len()
        );
        Ok(())
    }

    fn import(&self, path: &str) -> Result<(), String> {
        let raw = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let doc: Value = serde_json::from_slice(&raw).map_err(|e| format!("{path}: {e}"))?;
        let mut snap = self.snapshot()?;
        let mut writes = Vec::new();
        for u in doc["users"].as_array().cloned().unwrap_or_default() {
            let name = u["name"].as_str().unwrap_or_default().to_string();
            let rev = snap.users.get(&name).map_or(0, |(_, r)| *r);
            writes.push((store::user_key(&self.store, &name), rev, u.clone()));
            snap.users.insert(name, (u, rev));
        }
        for t in doc["tokens"].as_array().cloned().unwrap_or_default() {
            let id = t["id"].as_str().unwrap_or_default().to_string();
            let rev = snap.tokens.get(&id).map_or(0, |(_, r)| *r);
            writes.push((store::token_key(&self.store, &id), rev, t.clone()));
            snap.tokens.insert(id, (t, rev));
        }
        self.validate(&snap)?;
        for (key, rev, v) in &writes {
            self.cas(key, *rev, v)?;
        }
        println!("imported {} record(s) from {path}", writes.len());
        Ok(())
    }
}

/// The etcd record of a new token from the rest of `token issue USER ...`: scopes, hosts and
/// rules, checked here so that an error names the flag. Anything left over is refused.
fn token_record(
    user: &str,
    id: &str,
    sha256: &str,
    args: &mut Vec<String>,
    now_s: u64,
) -> Result<Value, String> {
    use dynedge_core::adapter::tokens::{self, RawPolicy, RawRules, TokenRules};
    let mut scopes = take_all(args, "--scope");
    if scopes.is_empty() {
        scopes = vec!["update".into()];
    }
    let hosts = take_all(args, "--host");
    let period = |flag: &str, v: Option<String>| -> Result<Option<u64>, String> {
        v.map(|v| {
            tokens::duration_s(&v).ok_or_else(|| {
                format!(
                    "{flag} {v}: a period like 30d, 12h, 15m, 3600s or seconds (up to 10 years)"
                )
            })
        })
        .transpose()
    };
    let max_age_s = period("--max-age", take_one(args, "--max-age"))?;
    let max_unused_period_s = period("--max-unused", take_one(args, "--max-unused"))?;
    let subnets = take_all(args, "--subnet");
    let mut policies = Vec::new();
    for p in take_all(args, "--policy") {
        let (host, types) = match p.split_once('=') {
            Some((h, t)) => (h, Some(t)),
            None => (p.as_str(), None),
        };
        policies.push(RawPolicy {
            host: (host != "*").then(|| host.to_string()),
            types: types.map(|t| t.split(',').map(str::to_string).collect()),
        });
    }
    if let Some(extra) = args.get(3..).filter(|rest| !rest.is_empty()) {
        return Err(format!(
            "token issue: unknown argument(s) {}",
            extra.join(" ")
        ));
    }
    let rules = RawRules {
        allowed_subnets: subnets,
        max_age_s,
        max_unused_period_s,
        policies: (!policies.is_empty()).then_some(policies),
    };
    TokenRules::compile(&rules, Some(now_s)).map_err(|e| {
        let flag = match e.field.split(['[', '.']).next().unwrap_or_default() {
            "allowed_subnets" => "--subnet",
            "policies" => "--policy",
            "max_age_s" => "--max-age",
            _ => "--max-unused",
        };
        format!("{flag} ({}): {}", e.field, e.message)
    })?;
    let mut token = json!({"id": id, "user": user, "sha256": sha256,
                           "scopes": scopes, "active": true, "created_s": now_s});
    if !hosts.is_empty() {
        token["hosts"] = json!(hosts);
    }
    if let (Some(o), Value::Object(r)) = (token.as_object_mut(), json!(rules)) {
        o.extend(r);
    }
    Ok(token)
}

fn write_private(path: &str, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))?;
    f.write_all(bytes).map_err(|e| format!("{path}: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn admin() -> Admin {
        Admin {
            etcd: Etcd::new("http://127.0.0.1:1").unwrap(),
            store: EtcdStore {
                cluster: String::new(),
                authority: String::new(),
                prefix: "/dynedge/".into(),
                ttl_s: 5,
                max_stale_s: None,
                timeout_ms: 3000,
            },
            base: None,
        }
    }

    fn snapshot_with(token: Value) -> Snapshot {
        let user = json!({"name": "demo", "password_hash": hash_password("a long passphrase").unwrap(),
                          "hosts": ["home.dyn.example.test"]});
        Snapshot {
            users: BTreeMap::from([("demo".to_string(), (user, 1))]),
            tokens: BTreeMap::from([("t".to_string(), (token, 0))]),
        }
    }

    #[test]
    fn token_issue_writes_the_rules_every_gateway_compiles() {
        let mut a = args(
            "token issue demo --scope update --subnet 192.0.2.0/24 --subnet 2001:db8::/32 \
             --max-age 30d --max-unused 3600 --policy home.dyn.example.test=AAAA,TXT --policy *=A",
        );
        let t = token_record("demo", "t", &"0".repeat(64), &mut a, 1_700_000_000).unwrap();
        assert_eq!(
            t["allowed_subnets"],
            json!(["192.0.2.0/24", "2001:db8::/32"])
        );
        assert_eq!(t["created_s"], 1_700_000_000u64);
        assert_eq!(t["max_age_s"], 30 * 86_400);
        assert_eq!(t["max_unused_period_s"], 3600);
        assert_eq!(
            t["policies"],
            json!([{"host": "home.dyn.example.test", "types": ["AAAA", "TXT"]},
                   {"types": ["A"]}])
        );
        admin().validate(&snapshot_with(t)).unwrap();
    }

    #[test]
    fn token_issue_refuses_bad_rules_naming_the_flag() {
        for (line, flag) in [
            ("--subnet 192.0.2.0/33", "--subnet"),
            ("--max-age soon", "--max-age"),
            ("--max-unused 0", "--max-unused"),
            ("--policy home.dyn.example.test=MX", "--policy"),
            ("--policy a..b=A", "--policy"),
            ("--subnets 192.0.2.0/24", "unknown argument"),
        ] {
            let mut a = args(&format!("token issue demo {line}"));
            let e = token_record("demo", "t", &"0".repeat(64), &mut a, 1).unwrap_err();
            assert!(e.contains(flag), "{line}: {e}");
        }
        // A policy for a host the user does not own: refused by the same compile as the
        // gateways', with the field named.
        let mut a = args("token issue demo --policy neighbour.dyn.example.test=A");
        let t = token_record("demo", "t", &"0".repeat(64), &mut a, 1).unwrap();
        let e = admin().validate(&snapshot_with(t)).unwrap_err();
        assert!(e.contains("policies[0].host"), "{e}");
    }
}
