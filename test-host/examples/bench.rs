//! Cost per request of dynedge's filter in the test host, for the nochg and the good path.
//!
//! `cargo run -p dynedge-test-host --release --example bench -- [path.wasm] [requests]`
//!
//! Prints wall time per request (a fuel-less host), wasmtime fuel per request (≈ wasm
//! instructions executed), callouts per request and peak linear memory. The PowerDNS answers
//! come from dynedge-core's `FakePowerDns` (a fake). Figures are printed, never asserted.
//! Under valgrind, `--callgrind` re-runs itself with callgrind to count host instructions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dynedge_core::testing::FakePowerDns;
use dynedge_test_host::{Call, Host, Request};

// The tests' helpers: how a callout is answered by the fake PowerDNS.
#[path = "../tests/common/mod.rs"]
mod common;

const DEMO: &str = include_str!("../../examples/dynedge.json");
const AUTH: &str = "Basic ZGVtbzpkZW1vLXBhc3N3b3Jk"; // demo:demo-password (the public demo user)

/// The demo configuration with rate limits high enough that a benchmark is not "abuse".
fn bench_config() -> String {
    let mut v: serde_json::Value = serde_json::from_str(DEMO).unwrap();
    v["rate_limits"] = serde_json::json!({
        "good_per_client": {"limit": 100000000, "window_s": 60},
        "good_per_host": {"limit": 100000000, "window_s": 60},
    });
    v.to_string()
}

fn host(wasm: &PathBuf, fuel: bool) -> (Host, Arc<Mutex<u64>>) {
    let mut host = Host::builder(wasm).fuel(fuel).build().expect("load");
    assert!(
        host.configure(bench_config()).expect("configure"),
        "{}",
        host.log_text()
    );
    let pdns = Arc::new(Mutex::new(FakePowerDns::default()));
    let calls = Arc::new(Mutex::new(0u64));
    let counter = calls.clone();
    host.respond_with(move |call: &Call| {
        *counter.lock().unwrap() += 1;
        common::fake_pdns_answer(&mut pdns.lock().unwrap(), call)
    })
    .unwrap();
    (host, calls)
}

fn update(ip: &str) -> Request {
    Request::get(&format!(
        "/nic/update?hostname=home.dyn.example.test&myip={ip}"
    ))
    .header("user-agent", "dynedge-bench/1")
    .header("authorization", AUTH)
    .peer("192.0.2.200:5555")
}

fn one(host: &mut Host, ip: &str, want: &str) {
    let ctx = host.request(update(ip)).expect("request");
    let text = host
        .local_response(ctx)
        .map(|r| r.text())
        .unwrap_or_default();
    assert!(
        text.starts_with(want),
        "expected {want}, got {text:?}\n{}",
        host.log_text()
    );
    host.finish(ctx).expect("finish");
}

/// Runs `n` requests of one path.
#[inline(never)]
fn measured_batch(host: &mut Host, n: u32, good: bool) {
    for i in 0..n {
        if good {
            // Alternate addresses so every update changes the record.
            let ip = if i % 2 == 0 { "192.0.2.7" } else { "192.0.2.8" };
            host.advance_clock(Duration::from_millis(1)).unwrap();
            one(host, ip, "good");
        } else {
            one(host, "192.0.2.7", "nochg");
        }
    }
}

struct Figures {
    wall: Duration,
    fuel: u64,
    calls: f64,
    host_calls: f64,
}

fn run_path(wasm: &PathBuf, n: u32, good: bool) -> Figures {
    // Warm up: the first update verifies the password (Argon2) and fills the record cache.
    let warm = if good { "192.0.2.8" } else { "192.0.2.7" };
    let (mut timed, _) = host(wasm, false);
    one(&mut timed, warm, "good");
    let start = Instant::now();
    measured_batch(&mut timed, n, good);
    let wall = start.elapsed() / n;

    let (mut counted, calls) = host(wasm, true);
    one(&mut counted, warm, "good");
    let (fuel0, calls0, host0) = (
        counted.fuel_used(),
        *calls.lock().unwrap(),
        counted.host_calls(),
    );
    measured_batch(&mut counted, n.min(500), good);
    let m = u64::from(n.min(500));
    let made = *calls.lock().unwrap() - calls0;
    Figures {
        wall,
        fuel: (counted.fuel_used() - fuel0) / m,
        calls: made as f64 / m as f64,
        host_calls: (counted.host_calls() - host0) as f64 / m as f64,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let callgrind = args.iter().any(|a| a == "--callgrind");
    let inner: Option<String> = args
        .iter()
        .find_map(|a| a.strip_prefix("--inner=").map(str::to_owned));
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let wasm = positional.first().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip1/release/dynedge_filter.wasm")
    });
    let n: u32 = positional
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    if !wasm.is_file() {
        eprintln!(
            "{} is missing: cargo build -p dynedge-filter --target wasm32-wasip1 --release",
            wasm.display()
        );
        std::process::exit(2);
    }

    if let Some(path) = inner {
        // Under callgrind: only `measured_batch` is collected.
        let (mut h, _) = host(&wasm, false);
        one(
            &mut h,
            if path == "good" {
                "192.0.2.8"
            } else {
                "192.0.2.7"
            },
            "good",
        );
        measured_batch(&mut h, n, path == "good");
        return;
    }

    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    println!("dynedge filter in dynedge-test-host (wasmtime 48, cranelift, 1 worker)");
    println!("module: {} ({size} bytes)", wasm.display());

    // Argon2: the first request of a user (cache miss) against one served from the cache.
    let (mut h, _) = host(&wasm, true);
    let (f0, t0) = (h.fuel_used(), Instant::now());
    one(&mut h, "192.0.2.8", "good");
    let (miss_fuel, miss_wall) = (h.fuel_used() - f0, t0.elapsed());
    println!(
        "first request (Argon2 verify, m=19456 KiB t=2): {:.2} ms, {} fuel; peak linear memory {:.1} MiB",
        miss_wall.as_secs_f64() * 1e3,
        miss_fuel,
        h.peak_memory_bytes() as f64 / (1024.0 * 1024.0)
    );

    println!(
        "{:<6} {:>9} {:>14} {:>15} {:>17} {:>18}",
        "path",
        "requests",
        "wall/request",
        "fuel/request",
        "callouts/request",
        "host calls/request"
    );
    for (name, good) in [("nochg", false), ("good", true)] {
        let f = run_path(&wasm, n, good);
        println!(
            "{name:<6} {n:>9} {:>11.1} µs {:>15} {:>17.1} {:>18.1}",
            f.wall.as_secs_f64() * 1e6,
            f.fuel,
            f.calls,
            f.host_calls
        );
    }

    if callgrind {
        let exe = std::env::current_exe().unwrap();
        for path in ["nochg", "good"] {
            let out = std::env::temp_dir().join(format!("dynedge-bench-{path}.callgrind"));
            let status = Command::new("valgrind")
                .args(["--tool=callgrind", "--toggle-collect=*measured_batch*"])
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(&exe)
                .arg(&wasm)
                .arg("200")
                .arg(format!("--inner={path}"))
                .output();
            let total = status
                .ok()
                .and_then(|_| std::fs::read_to_string(&out).ok())
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| {
                            l.strip_prefix("totals:")
                                .or_else(|| l.strip_prefix("summary:"))
                        })
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                });
            match total {
                Some(ir) => println!(
                    "callgrind {path}: {} instructions/request (host + wasm, 200 requests)",
                    ir / 200
                ),
                None => println!("callgrind {path}: valgrind not available or no output"),
            }
        }
    }
}
