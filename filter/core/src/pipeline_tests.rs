//! The guard pipeline through the native driver: every route and credential kind is counted
//! and refused before Argon2, nobody can lock a user out from elsewhere, limiter state stays
//! bounded, credentials are minted at a limited rate, and repeated hosts are written once.

use serde_json::{json, Value};

use crate::auth::argon2_runs;
use crate::dialects::{self, acmedns, httpreq, path_query, Route, StatusMode};
use crate::exchange::Outcome;
use crate::limits;
use crate::request::Request;
use crate::testing::{body, get, header, json_body, request, status, Driver, RequestExt, TOKEN};

const HOME: &str = "home.dyn.example.test";
const WRONG_TOKEN: &str = "dynedge_test_wrongwrongwrongwrongwrongwrongwro";
/// 40 characters of acme-dns's key alphabet, not the key.
const WRONG_KEY: &str = "wrongwrongwrongwrongwrongwrongwrongwrong";
const TXT: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1";
const CLIENT: &str = "203.0.113.9";

/// The demo plus a custom endpoint `/ddns` and acme-dns registration by token.
fn driver(edit: impl FnOnce(&mut Value)) -> Driver {
    let mut v: Value =
        serde_json::from_slice(include_bytes!("../../../examples/dynedge.json")).unwrap();
    v["endpoints"] = json!([{"path": "/ddns"}]);
    v["acme_dns"]["registration"] = json!("token");
    edit(&mut v);
    Driver::new(crate::Config::from_json(v.to_string().as_bytes()).unwrap())
}

/// A registered acme-dns account.
struct Account {
    user: String,
    key: String,
    subdomain: String,
}

fn register(d: &mut Driver) -> Account {
    let o = d.run(request("POST", "/acme-dns/register", "").bearer(TOKEN));
    assert_eq!(status(&o), 201, "{}", body(&o));
    let v = json_body(&o);
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    Account {
        user: s("username"),
        key: s("password"),
        subdomain: s("subdomain"),
    }
}

/// One credential kind of one route: a request with wrong credentials, and the same with the
/// right ones.
struct Case {
    kind: &'static str,
    wrong: Request,
    right: Request,
}

fn case(kind: &'static str, wrong: Request, right: Request) -> Case {
    Case { kind, wrong, right }
}

fn acme_update(path: &str, user: &str, key: &str, subdomain: &str) -> Request {
    request(
        "POST",
        path,
        &json!({"subdomain": subdomain, "txt": TXT}).to_string(),
    )
    .header("X-Api-User", user)
    .header("X-Api-Key", key)
}

fn httpreq(path: &str) -> Request {
    request(
        "POST",
        path,
        &json!({"fqdn": format!("_acme-challenge.{HOME}."), "value": TXT}).to_string(),
    )
}

/// Every route the router knows, each inner kind too.
fn every_route() -> Vec<Route> {
    vec![
        Route::Dyndns2(StatusMode::Always200),
        Route::Dyndns2(StatusMode::CertaDns),
        Route::CheckIp,
        Route::MyIp,
        Route::Health,
        Route::Aperto,
        Route::ManagementApi,
        Route::Dynv6,
        Route::PathQuery(path_query::Kind::UpdateByQuery),
        Route::PathQuery(path_query::Kind::UpdateByPath),
        Route::PathQuery(path_query::Kind::DeleteByPath),
        Route::Custom(0),
        Route::AcmeDns(acmedns::Endpoint::Register),
        Route::AcmeDns(acmedns::Endpoint::Update),
        Route::AcmeDns(acmedns::Endpoint::Health),
        Route::HttpReq(httpreq::Action::Present),
        Route::HttpReq(httpreq::Action::Cleanup),
    ]
}

/// The credential kinds of a route, or `None` for a route that is public by design. The match
/// is exhaustive (inner kinds included): a new route does not compile without its entry.
fn cases(route: Route, a: &Account) -> Option<Vec<Case>> {
    let dd = |p: &str| format!("{p}?hostname={HOME}&myip=192.0.2.1");
    let basic = |kind, path: &str| {
        case(
            kind,
            get(path).basic("demo", "wrong"),
            get(path).basic("demo", "demo-password"),
        )
    };
    let bearer =
        |kind, r: &dyn Fn() -> Request| case(kind, r().bearer(WRONG_TOKEN), r().bearer(TOKEN));
    Some(match route {
        Route::Dyndns2(StatusMode::Always200) => vec![
            basic("basic", &dd("/nic/update")),
            case(
                "query user+password",
                get(&format!(
                    "{}&username=demo&password=wrong",
                    dd("/nic/update")
                )),
                get(&format!(
                    "{}&username=demo&password=demo-password",
                    dd("/nic/update")
                )),
            ),
            bearer("bearer", &|| get(&dd("/nic/update"))),
        ],
        Route::Dyndns2(StatusMode::CertaDns) => vec![
            basic("basic", &dd("/v3/update")),
            bearer("bearer", &|| get(&dd("/domains/nic/update"))),
        ],
        Route::CheckIp | Route::MyIp | Route::Health => return None,
        Route::Aperto => {
            let r = || {
                request(
                    "POST",
                    "/.well-known/apertodns/v1/update",
                    &json!({"hostname": HOME, "ipv4": "192.0.2.1"}).to_string(),
                )
            };
            vec![
                bearer("bearer", &r),
                case(
                    "x-api-key",
                    r().header("x-api-key", WRONG_TOKEN),
                    r().header("x-api-key", TOKEN),
                ),
            ]
        }
        Route::ManagementApi => vec![
            basic("basic", "/api/tokens"),
            bearer("bearer", &|| get("/api/tokens")),
        ],
        Route::Dynv6 => {
            let p = format!("/api/update?zone={HOME}&ipv4=192.0.2.1");
            vec![
                case(
                    "token in query",
                    get(&format!("{p}&token={WRONG_TOKEN}")),
                    get(&format!("{p}&token={TOKEN}")),
                ),
                bearer("bearer", &|| get(&p)),
                basic("basic", &p),
            ]
        }
        Route::PathQuery(path_query::Kind::UpdateByQuery) => {
            let p = |s: &str| get(&format!("/update-by-query?secret={s}&fqdn={HOME}"));
            vec![case("secret in query", p(WRONG_TOKEN), p(TOKEN))]
        }
        Route::PathQuery(path_query::Kind::UpdateByPath) => {
            let p = |s: &str| get(&format!("/update-by-path/{s}/{HOME}/192.0.2.1"));
            vec![case("secret in path", p(WRONG_TOKEN), p(TOKEN))]
        }
        Route::PathQuery(path_query::Kind::DeleteByPath) => {
            let p = |s: &str| get(&format!("/delete-by-path/{s}/{HOME}"));
            vec![case("secret in path", p(WRONG_TOKEN), p(TOKEN))]
        }
        Route::Custom(_) => {
            let p = format!("/ddns?hostname={HOME}");
            vec![
                case(
                    "query user+password",
                    get(&format!("{p}&user=demo&pass=wrong")),
                    get(&format!("{p}&user=demo&pass=demo-password")),
                ),
                basic("basic", &p),
                bearer("bearer", &|| get(&p)),
            ]
        }
        Route::AcmeDns(acmedns::Endpoint::Register) => {
            let r = || request("POST", "/acme-dns/register", "");
            vec![
                bearer("bearer", &r),
                case(
                    "basic",
                    r().basic("demo", "wrong"),
                    r().basic("demo", "demo-password"),
                ),
            ]
        }
        Route::AcmeDns(acmedns::Endpoint::Update) => vec![
            case(
                "x-api-user account",
                acme_update("/acme-dns/update", &a.user, WRONG_KEY, &a.subdomain),
                acme_update("/acme-dns/update", &a.user, &a.key, &a.subdomain),
            ),
            case(
                "x-api-user configured user",
                acme_update("/update", "demo", "wrong", HOME),
                acme_update("/update", "demo", "demo-password", HOME),
            ),
        ],
        Route::AcmeDns(acmedns::Endpoint::Health) => return None,
        Route::HttpReq(httpreq::Action::Present) => vec![
            case(
                "basic",
                httpreq("/httpreq/present").basic("demo", "wrong"),
                httpreq("/httpreq/present").basic("demo", "demo-password"),
            ),
            bearer("bearer", &|| httpreq("/httpreq/present")),
        ],
        Route::HttpReq(httpreq::Action::Cleanup) => vec![case(
            "basic",
            httpreq("/cleanup").basic("demo", "wrong"),
            httpreq("/cleanup").basic("demo", "demo-password"),
        )],
    })
}

fn refused(o: &Outcome) -> bool {
    status(o) == 429 || body(o).starts_with("abuse")
}

#[test]
fn every_route_and_credential_kind_is_counted_then_refused_before_argon2() {
    let mut seen_kinds = 0;
    for route in every_route() {
        let mut d = driver(|_| {});
        let account = register(&mut d);
        let Some(list) = cases(route, &account) else {
            // Public by design: nothing to present, nothing counted, never refused.
            let path = match route {
                Route::CheckIp => "/checkip",
                Route::MyIp => "/domains/my-ip",
                Route::AcmeDns(_) => "/acme-dns/health",
                _ => "/health",
            };
            assert_eq!(dialects::route_request(&d.cfg, &get(path)), Some(route));
            for _ in 0..20 {
                let o = d.run(get(path).from(CLIENT));
                assert_eq!(status(&o), 200, "{route:?}");
                assert!(o.counts.is_empty(), "{route:?}");
            }
            continue;
        };
        assert!(!list.is_empty(), "{route:?} has no credential kind");
        for c in list {
            seen_kinds += 1;
            let mut d = driver(|_| {});
            let account_again = register(&mut d);
            // The account case was built for the first driver's account: rebuild it here.
            let (wrong, right) = if c.kind == "x-api-user account" {
                let p = "/acme-dns/update";
                (
                    acme_update(p, &account_again.user, WRONG_KEY, &account_again.subdomain),
                    acme_update(
                        p,
                        &account_again.user,
                        &account_again.key,
                        &account_again.subdomain,
                    ),
                )
            } else {
                (c.wrong, c.right)
            };
            let what = format!("{route:?} / {}", c.kind);
            assert_eq!(
                dialects::route_request(&d.cfg, &wrong),
                Some(route),
                "{what}: the case's path is not this route"
            );
            for i in 0..d.cfg.rate_limits.bad_per_client.limit {
                let o = d.run(wrong.clone().from(CLIENT));
                assert!(!refused(&o), "{what}: attempt {i} refused: {}", body(&o));
                assert!(
                    !o.counts.is_empty() && o.counts.iter().all(limits::is_bad_count),
                    "{what}: attempt {i} not counted as a failure: {:?}",
                    o.counts
                );
            }
            let calls = d.calls.len();
            let before = argon2_runs();
            let o = d.run(right.from(CLIENT));
            assert!(
                refused(&o),
                "{what}: right credentials after the limit: {} {}",
                status(&o),
                body(&o)
            );
            assert_eq!(
                argon2_runs(),
                before,
                "{what}: Argon2 ran for a refused request"
            );
            assert_eq!(
                d.calls.len(),
                calls,
                "{what}: a refused request called the backend"
            );
            assert!(
                o.counts.is_empty(),
                "{what}: a refusal is not counted again"
            );
            if route == Route::Dynv6 || status(&o) == 429 && !body(&o).starts_with("abuse") {
                assert!(
                    header(&o, "retry-after").is_some_and(|s| s.parse::<u64>().is_ok()),
                    "{what}: 429 without Retry-After"
                );
            }
        }
    }
    assert!(seen_kinds >= 25, "{seen_kinds} cases");
}

#[test]
fn the_right_credentials_still_work_below_the_limit_on_every_route() {
    // The control for the test above: the same right requests succeed from a fresh client, so
    // the refusals there come from the counts and nothing else.
    for route in every_route() {
        let mut d = driver(|_| {});
        let account = register(&mut d);
        let Some(list) = cases(route, &account) else {
            continue;
        };
        for c in list {
            let o = d.run(c.right.from("198.51.100.77"));
            assert!(
                !refused(&o) && status(&o) < 400,
                "{route:?} / {}: {} {}",
                c.kind,
                status(&o),
                body(&o)
            );
        }
    }
}

#[test]
fn dynv6_refuses_the_sixth_wrong_token_with_429_and_retry_after() {
    let mut d = Driver::demo();
    let p = format!("/api/update?zone={HOME}&ipv4=192.0.2.1");
    for _ in 0..5 {
        let o = d.run(get(&format!("{p}&token={WRONG_TOKEN}")).from(CLIENT));
        assert_eq!(status(&o), 401);
    }
    let o = d.run(get(&format!("{p}&token={TOKEN}")).from(CLIENT));
    assert_eq!(
        (status(&o), body(&o).as_str()),
        (429, "too many requests\n")
    );
    assert_eq!(header(&o, "retry-after"), Some("60"));
    let o = d.run(
        get(&format!("{p}&token={TOKEN}"))
            .from(CLIENT)
            .header("accept", "application/json"),
    );
    assert_eq!(json_body(&o)["code"], "abuse");
    d.advance_ms(60_000);
    let o = d.run(get(&format!("{p}&token={TOKEN}")).from(CLIENT));
    assert_eq!(status(&o), 200, "{}", body(&o));
}

// ------------------------------------------------------------------ targeted lockout

fn nic(password: &str, from: &str) -> Request {
    get(&format!("/nic/update?hostname={HOME}&myip=192.0.2.1"))
        .basic("demo", password)
        .from(from)
}

#[test]
fn an_attacker_from_many_networks_cannot_lock_out_the_victims_known_client() {
    let mut d = Driver::demo();
    let victim = "198.51.100.7";
    assert!(body(&d.run(nic("demo-password", victim))).starts_with("good"));
    // 200 guesses from 100 networks: far over bad_per_user (20), under every per-network limit.
    for i in 0..200 {
        let from = format!("10.{}.{}.1", i % 100, i / 100);
        let o = d.run(nic("guess", &from));
        assert!(
            matches!(body(&o).as_str(), "badauth\n" | "abuse\n"),
            "{}",
            body(&o)
        );
    }
    assert_eq!(
        body(&d.run(nic("demo-password", victim))),
        "nochg 192.0.2.1\n"
    );
    // A client the user never logged in from is refused while the guessing goes on, before
    // Argon2.
    let before = argon2_runs();
    assert_eq!(body(&d.run(nic("demo-password", "192.0.2.99"))), "abuse\n");
    assert_eq!(argon2_runs(), before);
}

#[test]
fn one_network_rotating_addresses_is_refused_before_argon2() {
    let mut d = Driver::demo();
    let limit = d.cfg.rate_limits.bad_per_user_net.limit;
    for i in 0..limit {
        // A fresh address each time: the per-address window never fills.
        let o = d.run(nic("guess", &format!("203.0.113.{}", i + 1)));
        assert_eq!(body(&o), "badauth\n");
    }
    let before = argon2_runs();
    let o = d.run(nic("demo-password", "203.0.113.200"));
    assert_eq!(body(&o), "abuse\n");
    assert_eq!(argon2_runs(), before);
    // Another network is not concerned.
    assert!(body(&d.run(nic("demo-password", "198.51.100.8"))).starts_with("good"));
}

#[test]
fn made_up_user_names_are_counted_per_client_only() {
    let mut d = driver(|_| {});
    for (name, r) in [
        (
            "acme-dns",
            acme_update("/acme-dns/update", "nobody", "wrong", HOME),
        ),
        (
            "acme-dns account",
            acme_update(
                "/acme-dns/update",
                "00000000-0000-4000-8000-000000000000",
                WRONG_KEY,
                "00000000-0000-4000-8000-000000000000",
            ),
        ),
        (
            "httpreq",
            httpreq("/httpreq/present").basic("nobody", "wrong"),
        ),
        (
            "dyndns2",
            get(&format!("/nic/update?hostname={HOME}")).basic("nobody", "wrong"),
        ),
    ] {
        let o = d.run(r.from("198.51.100.1"));
        assert_eq!(o.counts.len(), 1, "{name}: {:?}", o.counts);
        let o = d.run(nic("wrong", "198.51.100.2"));
        assert_eq!(
            o.counts.len(),
            3,
            "an existing user is counted per user too"
        );
    }
}

// ------------------------------------------------------------------ bounded state

#[test]
fn limiter_keys_have_a_fixed_shape_whatever_the_input() {
    let mut d = driver(|_| {});
    let huge = "u".repeat(40 * 1024);
    d.run(acme_update("/acme-dns/update", &huge, "wrong", HOME).from("198.51.100.1"));
    // A thousand addresses of one IPv6 /56: one failure window.
    for i in 0..1000u32 {
        d.run(nic("wrong", &format!("2001:db8:0:12::{i:x}")));
    }
    let keys: Vec<String> =
        d.kv.dump()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("dynedge:rl:"))
            .collect();
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(k.len() <= 64, "{k}");
        assert!(
            !k.contains("uuuu") && !k.contains("2001") && !k.contains("demo"),
            "{k}"
        );
    }
    // Failures per client (2), per user (1), per user network (1): the /56 is one client.
    let bad = keys
        .iter()
        .filter(|k| k.starts_with("dynedge:rl:bad:"))
        .count();
    assert_eq!(bad, 4, "{keys:?}");
}

#[test]
fn minting_tokens_is_limited_per_client() {
    let mut d = Driver::demo();
    let limit = d.cfg.rate_limits.mint_per_client.limit;
    for i in 0..limit {
        let o = d.run(
            request(
                "POST",
                "/api/tokens",
                &json!({"name": format!("t{i}")}).to_string(),
            )
            .basic("demo", "demo-password")
            .from(CLIENT),
        );
        assert_eq!(status(&o), 201, "{}", body(&o));
    }
    let o = d.run(
        request("POST", "/api/tokens", r#"{"name": "one too many"}"#)
            .basic("demo", "demo-password")
            .from(CLIENT),
    );
    assert_eq!(status(&o), 429, "{}", body(&o));
    assert!(header(&o, "retry-after").is_some());
    let o = d.run(
        request("POST", "/api/tokens", r#"{"name": "elsewhere"}"#)
            .basic("demo", "demo-password")
            .from("198.51.100.1"),
    );
    assert_eq!(status(&o), 201, "another client is not limited");
}

// ------------------------------------------------------------------ repeated and limited hosts

#[test]
fn repeated_hosts_are_written_once_and_each_answered() {
    let mut d = Driver::demo();
    let names = vec![HOME; 20].join(",");
    let o = d.run(
        nic("demo-password", CLIENT)
            .tap_path(&format!("/nic/update?hostname={names}&myip=192.0.2.1")),
    );
    assert_eq!(body(&o), "good 192.0.2.1\n".repeat(20));
    assert_eq!(d.writes(), 1);

    let mut d = Driver::demo();
    let updates: Vec<Value> = (0..100)
        .map(|_| json!({"hostname": HOME, "ipv4": "192.0.2.2"}))
        .collect();
    let o = d.run(
        request(
            "POST",
            "/.well-known/apertodns/v1/bulk-update",
            &json!({ "updates": updates }).to_string(),
        )
        .bearer(TOKEN),
    );
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(json_body(&o)["data"]["summary"]["successful"], 100);
    assert_eq!(d.writes(), 1);
    assert_eq!(d.pdns.get(HOME, "A"), vec!["192.0.2.2"]);
}

/// A request built for a registered acme-dns account.
type MakeRequest = Box<dyn Fn(&Account) -> Request>;

#[test]
fn good_per_host_applies_in_every_dialect() {
    let two = |v: &mut Value| {
        v["rate_limits"] = json!({"good_per_host": {"limit": 2, "window_s": 60}});
    };
    let updates: Vec<(&str, MakeRequest)> = vec![
        ("dyndns2", Box::new(|_| nic("demo-password", CLIENT))),
        (
            "dynv6",
            Box::new(|_| {
                get(&format!(
                    "/api/update?zone={HOME}&ipv4=192.0.2.1&token={TOKEN}"
                ))
            }),
        ),
        (
            "path_query",
            Box::new(|_| get(&format!("/update-by-path/{TOKEN}/{HOME}/192.0.2.1"))),
        ),
        (
            "custom",
            Box::new(|_| get(&format!("/ddns?hostname={HOME}&myip=192.0.2.1")).bearer(TOKEN)),
        ),
        (
            "apertodns",
            Box::new(|_| {
                request(
                    "POST",
                    "/.well-known/apertodns/v1/update",
                    &json!({"hostname": HOME, "ipv4": "192.0.2.1"}).to_string(),
                )
                .bearer(TOKEN)
            }),
        ),
        (
            "httpreq",
            Box::new(|_| httpreq("/httpreq/present").bearer(TOKEN)),
        ),
        (
            "acme-dns",
            Box::new(|a| acme_update("/acme-dns/update", &a.user, &a.key, &a.subdomain)),
        ),
    ];
    for (name, r) in updates {
        let mut d = driver(two);
        let a = register(&mut d);
        for _ in 0..2 {
            let o = d.run(r(&a));
            assert!(status(&o) < 400 && !refused(&o), "{name}: {}", body(&o));
        }
        let writes = d.writes();
        let o = d.run(r(&a));
        assert!(refused(&o), "{name}: {} {}", status(&o), body(&o));
        assert_eq!(d.writes(), writes, "{name}: a limited host was written");
    }
}

#[test]
fn no_dialect_calls_the_guards_directly() {
    let sources = [
        include_str!("dialects/acme.rs"),
        include_str!("dialects/acmedns.rs"),
        include_str!("dialects/apertodns/auth.rs"),
        include_str!("dialects/apertodns/bulk.rs"),
        include_str!("dialects/apertodns/config.rs"),
        include_str!("dialects/apertodns/fields.rs"),
        include_str!("dialects/apertodns/mod.rs"),
        include_str!("dialects/apertodns/plan.rs"),
        include_str!("dialects/apertodns/public.rs"),
        include_str!("dialects/apertodns/status.rs"),
        include_str!("dialects/apertodns/txt.rs"),
        include_str!("dialects/apertodns/update.rs"),
        include_str!("dialects/api/mod.rs"),
        include_str!("dialects/api/tokens.rs"),
        include_str!("dialects/api/webhooks.rs"),
        include_str!("dialects/custom.rs"),
        include_str!("dialects/dyndns2.rs"),
        include_str!("dialects/dynv6.rs"),
        include_str!("dialects/helpers.rs"),
        include_str!("dialects/httpreq.rs"),
        include_str!("dialects/mod.rs"),
        include_str!("dialects/path_query.rs"),
    ];
    for src in sources {
        for call in [
            "auth::authenticate(",
            "auth::verify_cached(",
            "limits::refuse_client",
            "limits::refused_for",
            "limits::count_bad",
            "limits::count_good",
            "limits::refuse_host",
            "Authorized::sweep",
        ] {
            assert!(!src.contains(call), "a dialect calls {call}");
        }
    }
}

trait TapPath {
    fn tap_path(self, path: &str) -> Request;
}

impl TapPath for Request {
    fn tap_path(mut self, path: &str) -> Request {
        self.path = path.into();
        self
    }
}
