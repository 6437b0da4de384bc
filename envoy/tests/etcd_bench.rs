//! Benchmark (prints figures, asserts only that the load ran): throughput and p99 of the
//! `nochg` and `good` paths through one gateway with the etcd store against the configuration
//! store, and etcd calls per request. Run:
//!   cargo test -p dynedge-envoy --test etcd_bench -- --ignored --nocapture
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::Duration;

use dynedge_envoy::etcd::{GatewayPorts, Gateways};
use dynedge_envoy::{
    port_is_free, wasm_file, workspace_root, Certificate, Envoy, EnvoyConfig, PowerDns, DEMO_ZONE,
};

const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";
const SECONDS: u32 = 8;
static NEXT_PORT: AtomicU16 = AtomicU16::new(26900);

fn free_port() -> u16 {
    loop {
        let port = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 27000);
        if port_is_free(port) {
            return port;
        }
    }
}

/// Result of one wrk run.
#[derive(Debug)]
struct Run {
    requests: u64,
    rps: f64,
    p99: String,
}

/// wrk against `https://127.0.0.1:{port}` with the demo token; `good` varies the address on
/// every request (one connection, so one writer), `nochg` repeats one (four connections).
fn wrk(dir: &Path, port: u16, good: bool) -> Run {
    let script = dir.join(if good { "good.lua" } else { "nochg.lua" });
    let lua = if good {
        "n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(\"GET\", \"/nic/update?hostname=home.dyn.example.test&myip=198.51.\" .. (100 + math.floor(n / 250) % 3) .. \".\" .. (n % 250 + 1))\nend\n".to_string()
    } else {
        "wrk.path = \"/nic/update?hostname=home.dyn.example.test&myip=192.0.2.77\"\n".to_string()
    };
    fs::write(&script, lua).unwrap();
    let out = Command::new("wrk")
        .args(["-t1", if good { "-c1" } else { "-c4" }, "-d"])
        .arg(format!("{SECONDS}s"))
        .args([
            "--latency",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            "-H",
            "User-Agent: dynedge-bench/1",
            "-s",
        ])
        .arg(&script)
        .arg(format!("https://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 0, "wrk ran: {text}");
    Run {
        requests,
        rps: field("Requests/sec:").parse().unwrap_or(0.0),
        p99: field("99%"),
    }
}

fn curl(port: u16, ca: &Path, query: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-A",
            "b/1",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            "--cacert",
        ])
        .arg(ca)
        .arg(format!(
            "https://127.0.0.1:{port}/nic/update?hostname=home.dyn.example.test&{query}"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn benchmark_prints_throughput_p99_and_etcd_calls_per_request_for_both_stores() {
    let wasm = wasm_file().unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("etcd-bench");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();

    // Configuration store: one gateway, PowerDNS, rate limits off.
    let (dns, api, https) = (free_port(), free_port(), free_port());
    let mut pdns = PowerDns::start(&dir.join("pdns"), dns, api, "dynedge-demo-pdns-key").unwrap();
    pdns.create_zone(DEMO_ZONE).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(workspace_root().join("examples/dynedge.json")).unwrap(),
    )
    .unwrap();
    cfg["backends"]["pdns"]["authority"] = format!("127.0.0.1:{api}").into();
    cfg["rate_limits"] = serde_json::json!({"enabled": false});
    let cert = Certificate::self_signed(&dir.join("tls")).unwrap();
    let envoy = Envoy::start(
        &dir.join("envoy-config-store"),
        &EnvoyConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: https,
            certificate: cert.clone(),
            wasm: wasm.clone(),
            plugin_config: cfg.to_string(),
            pdns_api_port: api,
            access_log: dir.join("access-config.log"),
            webhook_port: None,
        },
    )
    .unwrap();
    assert!(curl(https, &cert.cert, "myip=192.0.2.77").ends_with("192.0.2.77"));
    let config_nochg = wrk(&dir, https, false);
    let config_good = wrk(&dir, https, true);
    drop(envoy);
    drop(pdns);

    // etcd store: three members, three gateways; load through gateway 1.
    let ports = GatewayPorts {
        etcd: (0..3).map(|_| (free_port(), free_port())).collect(),
        dns: free_port(),
        pdns_api: free_port(),
        pdns_front: free_port(),
        https: (0..3).map(|_| free_port()).collect(),
    };
    let g = Gateways::start(
        &dir.join("etcd-store"),
        &ports,
        2,
        false,
        Some(cert.clone()),
        &wasm,
    )
    .unwrap();
    let port = g.port(0);
    assert!(curl(port, &cert.cert, "myip=192.0.2.77").ends_with("192.0.2.77"));
    // Background: every gateway's credential sync (one txn per ttl_s each).
    let idle0 = g.etcd.kv_calls();
    thread::sleep(Duration::from_secs(u64::from(SECONDS)));
    let idle = g.etcd.kv_calls() - idle0;
    let before = g.etcd.kv_calls();
    let etcd_nochg = wrk(&dir, port, false);
    let mid = g.etcd.kv_calls();
    let etcd_good = wrk(&dir, port, true);
    let after = g.etcd.kv_calls();
    let per = |delta: u64, run: &Run| (delta.saturating_sub(idle)) as f64 / run.requests as f64;

    println!("\n== dynedge store benchmark: one gateway, wrk {SECONDS}s, Bearer token, HTTPS ==");
    println!("path   store   conns  requests   req/s     p99      etcd calls/request");
    for (path, store, conns, run, calls) in [
        ("nochg", "config", 4, &config_nochg, None),
        (
            "nochg",
            "etcd",
            4,
            &etcd_nochg,
            Some(per(mid - before, &etcd_nochg)),
        ),
        ("good", "config", 1, &config_good, None),
        (
            "good",
            "etcd",
            1,
            &etcd_good,
            Some(per(after - mid, &etcd_good)),
        ),
    ] {
        println!(
            "{path:<6} {store:<7} {conns:<6} {:<10} {:<9.1} {:<8} {}",
            run.requests,
            run.rps,
            run.p99,
            calls.map_or("0".to_string(), |c| format!("{c:.2}"))
        );
    }
    println!(
        "(background credential sync: {idle} etcd calls per {SECONDS}s for 3 gateways, subtracted)"
    );
}
