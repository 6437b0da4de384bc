//! Every JSON dialect answers a rate-limited request with 429 and `Retry-After`, whichever
//! limit refused it: the client's windows (before authentication) or the host's update window
//! (after it). DynDNS2 keeps its `abuse` word.

use serde_json::{json, Value};

use crate::testing::{body, get, json_body, request, status, Driver, RequestExt, TOKEN};

const HOME: &str = "home.dyn.example.test";

/// The demo with one update per host a minute, and two failed logins per client.
fn tight() -> Driver {
    let mut v: Value =
        serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
    v["rate_limits"] = json!({
        "good_per_host": {"limit": 1, "window_s": 60},
        "bad_per_client": {"limit": 2, "window_s": 120},
    });
    Driver::new(crate::Config::from_json(v.to_string().as_bytes()).unwrap())
}

/// Each JSON dialect's update of HOME, with the demo token (or `secret`).
fn updates(secret: &str, n: u8) -> Vec<(&'static str, crate::request::Request)> {
    let ip = format!("192.0.2.{n}");
    vec![
        (
            "apertodns",
            request(
                "POST",
                "/.well-known/apertodns/v1/update",
                &json!({"hostname": HOME, "ipv4": ip}).to_string(),
            )
            .bearer(secret),
        ),
        (
            "dynv6",
            get(&format!("/api/update?zone={HOME}&token={secret}&ipv4={ip}")),
        ),
        (
            "path_query",
            get(&format!(
                "/update-by-query?secret={secret}&fqdn={HOME}&ip_1={ip}"
            )),
        ),
        (
            "httpreq",
            request(
                "POST",
                "/httpreq/present",
                &json!({"fqdn": format!("_acme-challenge.{HOME}."),
                        "value": format!("{:A<42}{n}", "")})
                .to_string(),
            )
            .bearer(secret),
        ),
    ]
}

fn assert_429(o: &crate::exchange::Outcome, what: &str, after: &str) {
    assert_eq!(status(o), 429, "{what}: {}", body(o));
    assert_eq!(
        crate::testing::header(o, "retry-after"),
        Some(after),
        "{what}: {:?}",
        o.reply.as_ref().map(|r| &r.headers)
    );
}

#[test]
fn an_update_over_the_host_limit_is_429_with_retry_after_in_every_json_dialect() {
    for (n, (dialect, _)) in updates(TOKEN, 0).into_iter().enumerate() {
        let mut d = tight();
        let first = updates(TOKEN, 10).swap_remove(n).1;
        let o = d.run(first);
        assert!(status(&o) < 300, "{dialect}: {}", body(&o));
        let again = updates(TOKEN, 11).swap_remove(n).1;
        assert_429(&d.run(again), dialect, "60");
    }
}

#[test]
fn an_acme_dns_update_over_the_host_limit_is_429_with_retry_after() {
    let mut d = tight();
    let reg = json_body(&d.run(request("POST", "/acme-dns/register", "")));
    let update = |n: u8| {
        request(
            "POST",
            "/acme-dns/update",
            &json!({"subdomain": reg["subdomain"], "txt": format!("{:B<42}{n}", "")}).to_string(),
        )
        .header("X-Api-User", reg["username"].as_str().unwrap())
        .header("X-Api-Key", reg["password"].as_str().unwrap())
    };
    assert_eq!(status(&d.run(update(1))), 200);
    assert_429(&d.run(update(2)), "acme-dns", "60");
}

#[test]
fn a_client_over_its_failure_limit_is_429_with_retry_after_in_every_json_dialect() {
    let wrong = "dynedge_live_wrongwrongwrongwrongwrongwron";
    for (n, (dialect, _)) in updates(TOKEN, 0).into_iter().enumerate() {
        let mut d = tight();
        for i in 0..2 {
            let o = d.run(updates(wrong, i).swap_remove(n).1);
            assert_eq!(status(&o), 401, "{dialect}: {}", body(&o));
        }
        assert_429(&d.run(updates(TOKEN, 3).swap_remove(n).1), dialect, "120");
    }
}

#[test]
fn dyndns2_over_the_host_limit_keeps_abuse() {
    let mut d = tight();
    let update = |ip: &str| get(&format!("/nic/update?hostname={HOME}&myip={ip}")).bearer(TOKEN);
    assert_eq!(body(&d.run(update("192.0.2.1"))), "good 192.0.2.1\n");
    assert_eq!(body(&d.run(update("192.0.2.2"))).trim_end(), "abuse");
}
