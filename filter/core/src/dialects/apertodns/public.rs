//! The public endpoints `/info` (capabilities, limits, provider) and `/health`: no credentials,
//! only the per-address rate limit.

use serde_json::{json, Value};

use super::{Ctx, MAX_BULK, PREFIX, PROTOCOL_VERSION};
use crate::config::Config;
use crate::exchange::Env;
use crate::kv::KvWrite;
use crate::pipeline::Public;
use crate::reply::Reply;
use crate::time::iso8601;

pub(super) fn info(cfg: &Config, ctx: &Ctx, _: Public) -> Value {
    let a = &cfg.apertodns;
    let p = |s: &str| format!("{PREFIX}{s}");
    let rl = |n: u64| json!({"requests": n, "window_seconds": 60});
    json!({
        "protocol": "apertodns",
        "protocol_version": PROTOCOL_VERSION,
        "provider": {
            "name": a.provider.name,
            "website": a.provider.website,
            "documentation": a.provider.documentation,
            "support_email": a.provider.support_email,
        },
        "endpoints": {
            "info": p("info"),
            "health": p("health"),
            "update": p("update"),
            "bulk_update": p("bulk-update"),
            "status": p("status/{hostname}"),
            "domains": p("domains"),
            "txt": p("txt"),
            "legacy_dyndns2": "/nic/update",
        },
        "capabilities": {
            "ipv4": true,
            "ipv6": true,
            "auto_ip_detection": true,
            "bulk_update": true,
            "max_bulk_size": MAX_BULK,
            "webhooks": cfg.webhooks.is_some(),
            "txt_records": true,
            "txt_max_records": a.txt_max_records,
            "null_deletion": true,
            "concurrent_update": true,
        },
        "authentication": {
            "methods": ["bearer_token", "api_key_header", "basic_auth_legacy"],
            "token_format": "{provider}_{environment}_{random}",
            "scopes_supported": ["dns:update", "domains:read", "txt:read", "txt:write", "txt:delete"],
        },
        "rate_limits": {
            "update": rl(60),
            "bulk_update": rl(10),
            "status": rl(120),
            "domains": rl(60),
            "txt": rl(30),
        },
        "server_time": iso8601(ctx.now_ms),
    })
}

/// Key under which the first health check notes when this gateway started serving.
const STARTED_KEY: &str = "dynedge:apertodns:started_ms";

pub(super) fn health(ctx: &Ctx, env: &Env, _: Public) -> (Reply, Vec<KvWrite>) {
    let started = env
        .kv
        .get(STARTED_KEY)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok());
    let writes = match started {
        Some(_) => vec![],
        None => vec![KvWrite::put(
            STARTED_KEY.into(),
            env.now_ms.to_string().into_bytes(),
        )],
    };
    let uptime = env.now_ms.saturating_sub(started.unwrap_or(env.now_ms)) / 1000;
    (
        ctx.ok(
            200,
            json!({"status": "healthy", "timestamp": iso8601(ctx.now_ms), "uptime": uptime}),
        ),
        writes,
    )
}
