//! DynDNS2 through the whole exchange, against the fake PowerDNS (see `testing`).

use crate::testing::{get, Driver, Fault, RequestExt};
use crate::Request;

const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";
const HOME: &str = "home.dyn.example.test";

fn update(query: &str) -> Request {
    get(&format!("/nic/update?{query}")).basic("demo", "demo-password")
}

fn body(r: &crate::Reply) -> &str {
    r.body_text()
}

#[test]
fn first_update_is_good_and_lands_in_the_backend() {
    let mut d = Driver::demo();
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=192.0.2.7"))
        .unwrap();
    assert_eq!((r.status, body(&r)), (200, "good 192.0.2.7\n"));
    assert_eq!(d.pdns.records(HOME, "A"), vec!["192.0.2.7"]);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let methods: Vec<&str> = d.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET", "PATCH"], "read the record, then write it");
}

#[test]
fn same_address_again_is_nochg_without_any_call() {
    let mut d = Driver::demo();
    d.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    let before = d.calls.len();
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=192.0.2.7"))
        .unwrap();
    assert_eq!(body(&r), "nochg 192.0.2.7\n");
    assert_eq!(d.calls.len(), before, "the fresh KV record answers nochg");
}

#[test]
fn nochg_after_cache_expiry_reads_the_backend_and_does_not_write() {
    let mut d = Driver::demo();
    d.pdns
        .rrsets
        .insert((format!("{HOME}."), "A".into()), vec!["192.0.2.7".into()]);
    d.advance_ms(d.cfg.record_cache_ttl_s * 1000 + 1);
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=192.0.2.7"))
        .unwrap();
    assert_eq!(body(&r), "nochg 192.0.2.7\n");
    let methods: Vec<&str> = d.calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET"]);
}

#[test]
fn out_of_band_change_is_seen_once_the_record_cache_expires() {
    let mut d = Driver::demo();
    d.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    d.pdns
        .rrsets
        .insert((format!("{HOME}."), "A".into()), vec!["192.0.2.99".into()]);
    d.advance_ms(d.cfg.record_cache_ttl_s * 1000 + 1);
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=192.0.2.7"))
        .unwrap();
    assert_eq!(body(&r), "good 192.0.2.7\n");
    assert_eq!(d.pdns.records(HOME, "A"), vec!["192.0.2.7"]);
}

#[test]
fn ipv6_in_myip_or_myip6_writes_aaaa() {
    for q in [
        "myip=2001:db8::1",
        "myip6=2001:db8::1",
        "myipv6=2001:DB8:0::1",
        "ipv6=2001:db8::1",
    ] {
        let mut d = Driver::demo();
        let r = d
            .send(update(&format!("hostname=home.dyn.example.test&{q}")))
            .unwrap();
        assert_eq!(body(&r), "good 2001:db8::1\n", "{q}");
        assert_eq!(d.pdns.records(HOME, "AAAA"), vec!["2001:db8::1"]);
        assert!(d.pdns.records(HOME, "A").is_empty(), "{q} must not touch A");
    }
}

#[test]
fn dual_stack_sets_both_families_in_one_line() {
    let mut d = Driver::demo();
    let r = d
        .send(update(
            "hostname=home.dyn.example.test&myip=192.0.2.7,2001:db8::7",
        ))
        .unwrap();
    assert_eq!(body(&r), "good 192.0.2.7 2001:db8::7\n");
    let r = d
        .send(update(
            "hostname=home.dyn.example.test&myip=192.0.2.7&myip6=2001:db8::7",
        ))
        .unwrap();
    assert_eq!(body(&r), "nochg 192.0.2.7 2001:db8::7\n");
    let patches = d
        .calls
        .iter()
        .filter(|c| c.method == crate::backends::Method::Patch)
        .count();
    assert_eq!(patches, 1, "both families in one PATCH");
}

#[test]
fn missing_or_empty_myip_uses_the_client_address() {
    for q in ["", "&myip=", "&myip=auto"] {
        let mut d = Driver::demo();
        let r = d
            .send(update(&format!("hostname=home.dyn.example.test{q}")))
            .unwrap();
        assert_eq!(body(&r), "good 192.0.2.200\n", "{q:?}");
    }
}

#[test]
fn forwarded_for_is_ignored_from_untrusted_peers() {
    let mut d = Driver::demo();
    let r = d
        .send(update("hostname=home.dyn.example.test").header("x-forwarded-for", "198.51.100.9"))
        .unwrap();
    assert_eq!(body(&r), "good 192.0.2.200\n");
}

#[test]
fn forwarded_for_counts_through_a_trusted_proxy() {
    let mut d = Driver::demo();
    d.cfg.trusted_proxies = vec!["192.0.2.200/32".parse().unwrap()];
    let r = d
        .send(update("hostname=home.dyn.example.test").header("x-forwarded-for", "198.51.100.9"))
        .unwrap();
    assert_eq!(body(&r), "good 198.51.100.9\n");
}

#[test]
fn real_ip_counts_through_a_trusted_proxy_only() {
    let mut d = Driver::demo();
    let spoofed = d
        .send(update("hostname=home.dyn.example.test").header("x-real-ip", "198.51.100.9"))
        .unwrap();
    assert_eq!(body(&spoofed), "good 192.0.2.200\n");
    d.cfg.trusted_proxies = vec!["192.0.2.200/32".parse().unwrap()];
    let r = d
        .send(
            update("hostname=home.dyn.example.test")
                .header("x-real-ip", "198.51.100.9")
                .header("x-forwarded-for", "198.51.100.10"),
        )
        .unwrap();
    assert_eq!(body(&r), "good 198.51.100.9\n");
}

fn one_update_per_minute(d: &mut Driver) {
    d.cfg.rate_limits.good_per_host = crate::limits::Window {
        limit: 1,
        window_s: 60,
    };
}

#[test]
fn v4_then_v6_as_two_requests_counts_as_one_host_update() {
    let mut d = Driver::demo();
    one_update_per_minute(&mut d);
    let v4 = d.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    assert_eq!(body(&v4.unwrap()), "good 192.0.2.7\n");
    d.advance_ms(5_000);
    let v6 = d.send(update("hostname=home.dyn.example.test&myip=2001:db8::7"));
    assert_eq!(body(&v6.unwrap()), "good 2001:db8::7\n");
    assert_eq!(d.pdns.records(HOME, "AAAA"), vec!["2001:db8::7"]);
    // The pair used the marker: a third update in the window is one too many.
    d.advance_ms(5_000);
    let again = d.send(update("hostname=home.dyn.example.test&myip=2001:db8::8"));
    assert_eq!(body(&again.unwrap()), "abuse\n");
    let v4 = d.send(update("hostname=home.dyn.example.test&myip=192.0.2.8"));
    assert_eq!(body(&v4.unwrap()), "abuse\n");
}

#[test]
fn the_same_family_twice_or_the_other_one_late_counts_twice() {
    let mut d = Driver::demo();
    one_update_per_minute(&mut d);
    d.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    let same = d.send(update("hostname=home.dyn.example.test&myip=192.0.2.8"));
    assert_eq!(body(&same.unwrap()), "abuse\n");
    d.advance_ms((crate::limits::DUAL_STACK_S + 1) * 1000);
    let late = d.send(update("hostname=home.dyn.example.test&myip=2001:db8::7"));
    assert_eq!(body(&late.unwrap()), "abuse\n");
}

#[test]
fn a_trailing_dot_names_the_same_host() {
    let mut d = Driver::demo();
    let r = d
        .send(update("hostname=Home.dyn.example.test.&myip=192.0.2.7"))
        .unwrap();
    assert_eq!((r.status, body(&r)), (200, "good 192.0.2.7\n"));
    assert_eq!(d.pdns.records(HOME, "A"), vec!["192.0.2.7"]);
    let r = d
        .send(update("hostname=home.dyn.example.test..&myip=192.0.2.7"))
        .unwrap();
    assert_eq!(body(&r), "notfqdn\n");
}

#[test]
fn multi_host_reply_has_one_line_per_host_in_order() {
    let mut d = Driver::demo();
    let r = d
        .send(update(
            "hostname=home.dyn.example.test,neighbour.dyn.example.test,bad..name,HOME.dyn.example.test&myip=192.0.2.8",
        ))
        .unwrap();
    assert_eq!(
        body(&r),
        "good 192.0.2.8\nnohost\nnotfqdn\ngood 192.0.2.8\n"
    );
    assert_eq!(r.status, 200);
    assert!(d.pdns.records("neighbour.dyn.example.test", "A").is_empty());
}

#[test]
fn more_than_twenty_hosts_is_numhost_and_calls_nothing() {
    let mut d = Driver::demo();
    let hosts = vec![HOME; 21].join(",");
    let r = d
        .send(update(&format!("hostname={hosts}&myip=192.0.2.1")))
        .unwrap();
    assert_eq!(body(&r), "numhost\n");
    assert!(d.calls.is_empty());
}

#[test]
fn someone_elses_or_unknown_host_is_nohost() {
    for h in [
        "neighbour.dyn.example.test",
        "nobody.dyn.example.test",
        "home.other.test",
    ] {
        let mut d = Driver::demo();
        let r = d
            .send(update(&format!("hostname={h}&myip=192.0.2.1")))
            .unwrap();
        assert_eq!(body(&r), "nohost\n", "{h}");
        assert!(d.calls.is_empty());
    }
}

#[test]
fn missing_or_malformed_hostname_is_notfqdn() {
    for q in [
        "myip=192.0.2.1",
        "hostname=&myip=192.0.2.1",
        "hostname=localhost",
        "hostname=a_b.dyn.example.test",
    ] {
        let mut d = Driver::demo();
        let r = d.send(update(q)).unwrap();
        assert_eq!(body(&r), "notfqdn\n", "{q}");
        assert!(d.calls.is_empty());
    }
}

#[test]
fn idn_hostnames_are_matched_in_punycode() {
    let mut d = Driver::demo();
    d.cfg
        .users
        .get_mut("demo")
        .unwrap()
        .hosts
        .insert(crate::names::Fqdn::parse("xn--bcher-kva.dyn.example.test").unwrap());
    let r = d
        .send(update(
            "hostname=b%C3%BCcher.dyn.example.test&myip=192.0.2.1",
        ))
        .unwrap();
    assert_eq!(body(&r), "good 192.0.2.1\n");
    assert_eq!(
        d.pdns.records("xn--bcher-kva.dyn.example.test", "A"),
        vec!["192.0.2.1"]
    );
}

#[test]
fn wrong_password_unknown_user_and_bad_token_are_badauth_with_200() {
    for req in [
        get("/nic/update?hostname=home.dyn.example.test").basic("demo", "wrong"),
        get("/nic/update?hostname=home.dyn.example.test").basic("nobody", "demo-password"),
        get("/nic/update?hostname=home.dyn.example.test").header("authorization", "Bearer nope"),
        get("/nic/update?hostname=home.dyn.example.test&username=demo&password=wrong"),
    ] {
        let mut d = Driver::demo();
        let r = d.send(req).unwrap();
        assert_eq!((r.status, body(&r)), (200, "badauth\n"));
        assert!(d.calls.is_empty());
    }
}

#[test]
fn no_credentials_is_a_401_challenge() {
    let mut d = Driver::demo();
    let r = d
        .send(get("/nic/update?hostname=home.dyn.example.test"))
        .unwrap();
    assert_eq!((r.status, body(&r)), (401, "badauth\n"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"dynedge\"")
    );
}

#[test]
fn bearer_token_and_token_as_basic_password_and_query_credentials_work() {
    for req in [
        get("/nic/update?hostname=home.dyn.example.test&myip=192.0.2.3")
            .header("authorization", &format!("Bearer {TOKEN}")),
        get("/nic/update?hostname=home.dyn.example.test&myip=192.0.2.3").basic("user", TOKEN),
        get("/nic/update?hostname=home.dyn.example.test&myip=192.0.2.3&username=demo&password=demo-password"),
    ] {
        let mut d = Driver::demo();
        let r = d.send(req).unwrap();
        assert_eq!(body(&r), "good 192.0.2.3\n");
    }
}

#[test]
fn malformed_addresses_are_400_naming_the_parameter() {
    for (q, param) in [
        ("myip=999.1.1.1", "myip"),
        ("myip=1.2.3", "myip"),
        ("myip=01.2.3.4", "myip"),
        ("myip=fe80::1%25eth0", "myip"),
        ("myip6=192.0.2.1", "myip6"),
        ("myipv6=zzz", "myipv6"),
        ("myip=192.0.2.1,192.0.2.2", "myip"),
    ] {
        let mut d = Driver::demo();
        let r = d
            .send(update(&format!("hostname=home.dyn.example.test&{q}")))
            .unwrap();
        assert_eq!(r.status, 400, "{q}");
        assert!(
            body(&r).starts_with("invalid_ip: parameter "),
            "{q}: {}",
            body(&r)
        );
        assert!(body(&r).contains(param), "{q}: {}", body(&r));
        assert!(d.calls.is_empty());
    }
}

#[test]
fn special_ranges_are_refused_unless_the_zone_allows_them() {
    let mut d = Driver::demo();
    for ip in ["10.0.0.1", "192.168.1.1", "fe80::1", "224.0.0.1"] {
        let r = d
            .send(update(&format!("hostname=home.dyn.example.test&myip={ip}")))
            .unwrap();
        assert_eq!(r.status, 400, "{ip}");
        assert!(body(&r).contains("special range"), "{ip}");
    }
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=127.0.0.1"))
        .unwrap();
    assert_eq!(
        body(&r),
        "good 127.0.0.1\n",
        "the demo zone allows loopback"
    );
    assert_eq!(
        d.calls
            .iter()
            .filter(|c| c.method == crate::backends::Method::Patch)
            .count(),
        1
    );
}

#[test]
fn backend_unreachable_is_dnserr_never_good() {
    for fault in [
        Fault::Unreachable,
        Fault::Status(500, "oops"),
        Fault::Status(200, "<html>not json"),
        Fault::WritesFail,
        Fault::Status(401, "Unauthorized"),
    ] {
        let mut d = Driver::demo();
        d.pdns.fault = fault.clone();
        let r = d
            .send(update("hostname=home.dyn.example.test&myip=192.0.2.7"))
            .unwrap();
        assert_eq!((r.status, body(&r)), (200, "dnserr\n"), "{fault:?}");
        assert!(d.pdns.records(HOME, "A").is_empty());
    }
}

#[test]
fn a_failed_write_forgets_the_cached_record_so_the_next_try_rereads() {
    let mut d = Driver::demo();
    d.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    d.pdns.fault = Fault::WritesFail;
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=192.0.2.8"))
        .unwrap();
    assert_eq!(body(&r), "dnserr\n");
    d.pdns.fault = Fault::None;
    let calls_before = d.calls.len();
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=192.0.2.7"))
        .unwrap();
    // The backend still holds .7, but we no longer trust our cache: read, then nochg.
    assert_eq!(body(&r), "nochg 192.0.2.7\n");
    assert_eq!(d.calls[calls_before].method, crate::backends::Method::Get);
}

#[test]
fn certadns_aliases_use_http_statuses() {
    let cases = [
        (
            "/domains/update?hostname=home.dyn.example.test&myip=192.0.2.1",
            "demo-password",
            200,
            "good 192.0.2.1\n",
        ),
        (
            "/domains/nic/update?hostname=home.dyn.example.test",
            "wrong",
            401,
            "badauth\n",
        ),
        (
            "/domains/v2/update?hostname=neighbour.dyn.example.test&myip=192.0.2.1",
            "demo-password",
            404,
            "nohost\n",
        ),
        (
            "/domains/dyndns/update?hostname=home.dyn.example.test&myip=1.2.3",
            "demo-password",
            400,
            "",
        ),
        (
            "/v3/update?hostname=a..b&myip=192.0.2.1",
            "demo-password",
            400,
            "notfqdn\n",
        ),
    ];
    for (path, pw, status, text) in cases {
        let mut d = Driver::demo();
        let r = d.send(get(path).basic("demo", pw)).unwrap();
        assert_eq!(r.status, status, "{path}");
        if !text.is_empty() {
            assert_eq!(body(&r), text, "{path}");
        }
    }
    let mut d = Driver::demo();
    d.pdns.fault = Fault::Unreachable;
    let r = d
        .send(
            get("/domains/update?hostname=home.dyn.example.test&myip=192.0.2.1")
                .basic("demo", "demo-password"),
        )
        .unwrap();
    assert_eq!((r.status, body(&r)), (500, "dnserr\n"));
}

#[test]
fn every_alias_is_routed_and_other_paths_pass() {
    for path in [
        "/nic/update",
        "/update",
        "/domains/update",
        "/domains/nic/update",
        "/domains/v2/update",
        "/domains/dyndns/update",
        "/v3/update",
    ] {
        let mut d = Driver::demo();
        assert!(d.send(get(path)).is_some(), "{path}");
    }
    let mut d = Driver::demo();
    assert!(d.send(get("/index.html")).is_none());
    assert!(d.send(get("/nic/updatex")).is_none());
}

#[test]
fn post_form_body_carries_parameters() {
    let mut d = Driver::demo();
    let mut req = get("/nic/update")
        .basic("demo", "demo-password")
        .header("content-type", "application/x-www-form-urlencoded");
    req.method = "POST".into();
    req.body = b"hostname=home.dyn.example.test&myip=192.0.2.9".to_vec();
    let r = d.send(req).unwrap();
    assert_eq!(body(&r), "good 192.0.2.9\n");
}

#[test]
fn wrong_method_and_missing_agent_are_badagent() {
    let mut d = Driver::demo();
    let mut req = update("hostname=home.dyn.example.test");
    req.method = "DELETE".into();
    assert_eq!(body(&d.send(req).unwrap()), "badagent\n");
    let mut req = update("hostname=home.dyn.example.test");
    req.headers.retain(|(k, _)| k != "user-agent");
    assert_eq!(body(&d.send(req).unwrap()), "badagent\n");
    assert!(d.calls.is_empty());
}

#[test]
fn broken_query_strings_are_400_and_call_nothing() {
    for q in [
        "hostname=%zz",
        "hostname=a%00b",
        "hostname=home.dyn.example.test&hostname=x.test",
        "hostname=%C3%28",
    ] {
        let mut d = Driver::demo();
        let r = d.send(update(q)).unwrap();
        assert_eq!(r.status, 400, "{q}");
        assert!(body(&r).starts_with("invalid_request"), "{q}");
        assert!(d.calls.is_empty());
    }
}

#[test]
fn json_replies_when_asked() {
    let mut d = Driver::demo();
    let r = d
        .send(
            update("hostname=home.dyn.example.test&myip=192.0.2.7")
                .header("accept", "application/json"),
        )
        .unwrap();
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "good");
    assert_eq!(v["results"][0]["hostname"], HOME);
    assert_eq!(v["results"][0]["ipv4"], "192.0.2.7");
    let r = d
        .send(
            get("/nic/update?hostname=x")
                .basic("demo", "no")
                .header("accept", "application/json"),
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "badauth");
}

#[test]
fn every_reply_carries_the_layer0_security_headers() {
    let mut d = Driver::demo();
    for req in [
        update("hostname=home.dyn.example.test&myip=192.0.2.7"),
        update("hostname=home.dyn.example.test&myip=1.2.3"),
        get("/nic/update"),
        get("/nic/checkip"),
    ] {
        let r = d.send(req).unwrap();
        for (name, value) in crate::reply::SECURITY_HEADERS {
            assert_eq!(r.header(name), Some(*value), "{name}");
        }
    }
}

#[test]
fn audit_lines_name_the_change_and_never_a_secret() {
    let mut d = Driver::demo();
    d.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    d.send(
        get("/nic/update?hostname=home.dyn.example.test&myip=192.0.2.8")
            .header("authorization", &format!("Bearer {TOKEN}")),
    );
    assert_eq!(d.log.len(), 2);
    let line: serde_json::Value = serde_json::from_str(&d.log[1]).unwrap();
    assert_eq!(line["host"], HOME);
    assert_eq!(line["old"][0], "192.0.2.7");
    assert_eq!(line["new"][0], "192.0.2.8");
    assert_eq!(line["result"], "good");
    assert_eq!(line["token_id"], "demo-all");
    for l in &d.log {
        assert!(
            !l.contains("demo-password")
                && !l.contains(TOKEN)
                && !l.contains("dynedge-demo-pdns-key")
        );
    }
}

#[test]
fn a_cached_verification_does_not_let_another_password_in() {
    let mut d = Driver::demo();
    d.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    let cached = d.kv.len();
    assert!(
        cached >= 2,
        "auth cache entry and record cache entries are written"
    );
    // A different password for the same user is not served from the cache.
    let r = d
        .send(get("/nic/update?hostname=home.dyn.example.test").basic("demo", "demo-password2"))
        .unwrap();
    assert_eq!(body(&r), "badauth\n");
}

#[test]
fn a_client_hammering_bad_passwords_gets_abuse_even_with_the_right_one() {
    let mut d = Driver::demo();
    for _ in 0..d.cfg.rate_limits.bad_per_client.limit {
        let r = d
            .send(get("/nic/update?hostname=home.dyn.example.test").basic("demo", "guess"))
            .unwrap();
        assert_eq!(body(&r), "badauth\n");
    }
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=192.0.2.1"))
        .unwrap();
    assert_eq!((r.status, body(&r)), (200, "abuse\n"));
    assert!(d.calls.is_empty());
    let r = d
        .send(get("/domains/update?hostname=home.dyn.example.test").basic("demo", "demo-password"))
        .unwrap();
    assert_eq!((r.status, body(&r)), (429, "abuse\n"));
    d.advance_ms(d.cfg.rate_limits.bad_per_client.window_s * 1000);
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=192.0.2.1"))
        .unwrap();
    assert_eq!(body(&r), "good 192.0.2.1\n", "the window passed");
}

#[test]
fn a_host_updated_too_often_gets_abuse_on_its_line() {
    let mut d = Driver::demo();
    d.cfg.rate_limits.good_per_host.limit = 2;
    for _ in 0..2 {
        let r = d
            .send(update("hostname=home.dyn.example.test&myip=192.0.2.1"))
            .unwrap();
        assert!(r.body_text().starts_with("good") || r.body_text().starts_with("nochg"));
    }
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=192.0.2.1"))
        .unwrap();
    assert_eq!(body(&r), "abuse\n");
}

#[test]
fn rate_limits_can_be_switched_off() {
    let mut d = Driver::demo();
    d.cfg.rate_limits.enabled = false;
    for _ in 0..(d.cfg.rate_limits.bad_per_client.limit + 3) {
        d.send(get("/nic/update?hostname=home.dyn.example.test").basic("demo", "guess"));
    }
    let r = d
        .send(update("hostname=home.dyn.example.test&myip=192.0.2.1"))
        .unwrap();
    assert_eq!(body(&r), "good 192.0.2.1\n");
}

/// The demo configuration with `home` declared with interface identifier `::1:2:3:4`.
fn lan_host() -> Driver {
    let mut v: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../../../examples/dynedge.json")).unwrap();
    v["users"][0]["hosts"][0] = serde_json::json!({"name": HOME, "interface_id": "::1:2:3:4"});
    Driver::new(crate::Config::from_json(v.to_string().as_bytes()).unwrap())
}

#[test]
fn ip6lanprefix_plus_interface_id_is_the_aaaa_then_nochg() {
    let mut d = lan_host();
    let q = "hostname=home.dyn.example.test&myip=192.0.2.7&ip6lanprefix=2001:db8:1:2::/64";
    let r = d.send(update(q)).unwrap();
    assert_eq!(body(&r), "good 192.0.2.7 2001:db8:1:2:1:2:3:4\n");
    assert_eq!(d.pdns.records(HOME, "AAAA"), vec!["2001:db8:1:2:1:2:3:4"]);
    let r = d.send(update(q)).unwrap();
    assert_eq!(body(&r), "nochg 192.0.2.7 2001:db8:1:2:1:2:3:4\n");
    // No length means /64.
    let r = d
        .send(update(
            "hostname=home.dyn.example.test&myip=192.0.2.7&ip6lanprefix=2001:db8:1:3::",
        ))
        .unwrap();
    assert_eq!(body(&r), "good 192.0.2.7 2001:db8:1:3:1:2:3:4\n");
    assert_eq!(d.writes(), 2);
}

#[test]
fn ip6lanprefix_wins_over_myip6_for_a_host_with_an_interface_id() {
    let mut d = lan_host();
    let r = d
        .send(update(
            "hostname=home.dyn.example.test&myip=192.0.2.7&myip6=2001:db8::7&ip6lanprefix=2001:db8:1:2::/64",
        ))
        .unwrap();
    assert_eq!(body(&r), "good 192.0.2.7 2001:db8:1:2:1:2:3:4\n");
}

#[test]
fn ip6lanprefix_is_ignored_for_a_host_without_an_interface_id() {
    let mut d = Driver::demo();
    let r = d
        .send(update(
            "hostname=home.dyn.example.test&myip=192.0.2.7&ip6lanprefix=2001:db8:1:2::/64",
        ))
        .unwrap();
    assert_eq!(body(&r), "good 192.0.2.7\n");
    assert!(d.pdns.records(HOME, "AAAA").is_empty());
}

#[test]
fn ip6lanprefix_outside_the_zone_policy_or_malformed_is_400() {
    let mut d = lan_host();
    for prefix in ["fd00:1:2:3::/64", "2001:db8::/80", "192.0.2.0/24", "nope"] {
        let r = d
            .send(update(&format!(
                "hostname=home.dyn.example.test&myip=192.0.2.7&ip6lanprefix={prefix}"
            )))
            .unwrap();
        assert_eq!(r.status, 400, "{prefix}");
        assert!(body(&r).contains("ip6lanprefix"), "{prefix}: {}", body(&r));
    }
    assert!(body(
        &d.send(update(
            "hostname=home.dyn.example.test&myip=192.0.2.7&ip6lanprefix=fd00:1:2:3::"
        ))
        .unwrap()
    )
    .contains("special range"));
    assert_eq!(d.writes(), 0);
}

#[test]
fn an_exchange_lost_while_awaiting_its_body_answers_911_in_its_dialect() {
    use crate::exchange::{Env, Exchange, Step};
    let d = Driver::demo();
    let env = Env {
        now_ms: d.now_ms,
        random: 1,
        kv: &d.kv,
    };
    for (path, want) in [
        // dyn.com's endpoint answers every code with 200 (old routers read only the body).
        ("/nic/update", (200, "911\n")),
        ("/v3/update", (500, "911\n")),
    ] {
        let mut req = get(path).basic("demo", "demo-password");
        req.method = "POST".into();
        let (mut ex, step) = Exchange::start(&d.cfg, req, false, &env);
        assert!(matches!(step, Step::NeedBody { .. }), "{path}: {step:?}");
        let reply = ex.abort(&d.cfg, &env).reply.unwrap();
        assert_eq!((reply.status, body(&reply)), want, "{path}");
        assert!(ex.is_finished());
    }
}
