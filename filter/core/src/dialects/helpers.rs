//! Small unauthenticated helpers: what is my address, is the gateway up.

use serde_json::json;

use crate::config::Config;
use crate::exchange::Outcome;
use crate::reply::Reply;
use crate::request::Request;

/// dyndns `checkip` format, so ddclient `use=web` can detect its address through the gateway.
pub fn checkip(cfg: &Config, req: &Request) -> Outcome {
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

pub fn my_ip(cfg: &Config, req: &Request) -> Outcome {
    let ip = req.client_ip(&cfg.trusted_proxies).map(|ip| ip.to_string());
    Outcome::reply(Reply::json(200, &json!({ "ip": ip })))
}

pub fn health() -> Outcome {
    Outcome::reply(Reply::json(200, &json!({ "status": "ok" })))
}
