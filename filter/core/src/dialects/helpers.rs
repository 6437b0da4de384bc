//! Small unauthenticated helpers: what is my address, is the gateway up. Public by design:
//! each takes the guard pipeline's [`Public`] marker.

use serde_json::json;

use crate::config::Config;
use crate::exchange::Outcome;
use crate::pipeline::Public;
use crate::reply::Reply;
use crate::request::Request;

/// dyndns `checkip` format, so ddclient `use=web` can detect its address through the gateway.
/// With `Accept: application/json`: `{"ip": ...}` like `/domains/my-ip`.
pub fn checkip(cfg: &Config, req: &Request, public: Public) -> Outcome {
    if req.wants_json() {
        return my_ip(cfg, req, public);
    }
    let ip = req
        .client_ip(&cfg.trusted_proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    Outcome::reply(Reply::new(
        200,
        "text/html; charset=utf-8",
        format!(
            "<html><head><title>Current IP Check</title></head><body>Current IP Address: {ip}</body></html>\n"
        ),
    ))
}

pub fn my_ip(cfg: &Config, req: &Request, _: Public) -> Outcome {
    let ip = req.client_ip(&cfg.trusted_proxies).map(|ip| ip.to_string());
    Outcome::reply(Reply::json(200, &json!({ "ip": ip })))
}

/// `ok` as plain text, `{"status": "ok"}` with `Accept: application/json`.
pub fn health(req: &Request, _: Public) -> Outcome {
    if req.wants_json() {
        return Outcome::reply(Reply::json(200, &json!({ "status": "ok" })));
    }
    Outcome::reply(Reply::text(200, "ok\n"))
}

#[cfg(test)]
mod tests {
    use crate::testing::{body, get, header, json_body, status, Driver, RequestExt};

    #[test]
    fn checkip_answers_in_dyndns_format_for_ddclient_and_json_on_request() {
        let mut d = Driver::demo();
        for path in ["/nic/checkip", "/checkip"] {
            let o = d.run(get(path).from("198.51.100.7"));
            assert_eq!(status(&o), 200);
            assert_eq!(header(&o, "content-type"), Some("text/html; charset=utf-8"));
            assert_eq!(
                body(&o),
                "<html><head><title>Current IP Check</title></head><body>Current IP Address: 198.51.100.7</body></html>\n"
            );
        }
        let o = d.run(
            get("/nic/checkip")
                .from("2001:db8::7")
                .header("accept", "application/json"),
        );
        assert_eq!(json_body(&o), serde_json::json!({"ip": "2001:db8::7"}));
        assert!(d.calls.is_empty());
    }

    #[test]
    fn my_ip_is_json_and_forwarded_for_counts_only_from_trusted_hops() {
        let mut v: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
        v["trusted_proxies"] = serde_json::json!(["127.0.0.1"]);
        let mut d = Driver::new(crate::Config::from_json(v.to_string().as_bytes()).unwrap());
        let o = d.run(
            get("/domains/my-ip")
                .from("127.0.0.1")
                .header("x-forwarded-for", "203.0.113.9"),
        );
        assert_eq!(json_body(&o), serde_json::json!({"ip": "203.0.113.9"}));
        let o = d.run(
            get("/domains/my-ip")
                .from("198.51.100.1")
                .header("x-forwarded-for", "203.0.113.9"),
        );
        assert_eq!(
            json_body(&o),
            serde_json::json!({"ip": "198.51.100.1"}),
            "untrusted peer: header ignored"
        );
    }

    #[test]
    fn health_is_plain_ok_or_json_and_carries_layer_0_headers() {
        let mut d = Driver::demo();
        for path in ["/health", "/healthz"] {
            let o = d.run(get(path));
            assert_eq!((status(&o), body(&o).as_str()), (200, "ok\n"));
            assert!(header(&o, "strict-transport-security").is_some());
        }
        let o = d.run(get("/health").header("accept", "application/json"));
        assert_eq!(json_body(&o), serde_json::json!({"status": "ok"}));
    }
}
