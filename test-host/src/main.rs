//! `dynedge-test-host`: load a proxy-wasm module, configure it, optionally send one request.
//!
//! ```text
//! dynedge-test-host MODULE.wasm [--config FILE] [--workers N] [--peer IP:PORT]
//!                   [--header 'name: value']... [--forward CLUSTER=HOST:PORT]... [METHOD PATH]
//! ```
//! Prints whether the configuration was accepted, what the request led to (local reply,
//! forwarded request, pending callouts by cluster/method/path), the module's logs and any ABI
//! misuse. Header values of callouts are not printed (they may carry API keys).
//! Exit status: 0 configured (and request ran), 1 configuration refused, 2 error.

use std::process::ExitCode;

use dynedge_test_host::{Host, Outcome, Request};

struct Args {
    module: String,
    config: Option<String>,
    workers: usize,
    peer: Option<String>,
    headers: Vec<(String, String)>,
    forward: Vec<(String, String)>,
    request: Option<(String, String)>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut args = Args {
        module: String::new(),
        config: None,
        workers: 1,
        peer: None,
        headers: Vec::new(),
        forward: Vec::new(),
        request: None,
    };
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--config" => args.config = Some(value("--config")?),
            "--workers" => {
                args.workers = value("--workers")?
                    .parse()
                    .map_err(|_| "--workers takes a number")?
            }
            "--peer" => args.peer = Some(value("--peer")?),
            "--header" | "-H" => {
                let h = value("--header")?;
                let (n, v) = h.split_once(':').ok_or("--header takes 'name: value'")?;
                args.headers
                    .push((n.trim().to_owned(), v.trim().to_owned()));
            }
            "--forward" => {
                let f = value("--forward")?;
                let (c, a) = f
                    .split_once('=')
                    .ok_or("--forward takes CLUSTER=HOST:PORT")?;
                args.forward.push((c.to_owned(), a.to_owned()));
            }
            "--help" | "-h" => return Err(String::new()),
            _ => positional.push(a),
        }
    }
    match positional.as_slice() {
        [module] => args.module = module.clone(),
        [module, method, path] => {
            args.module = module.clone();
            args.request = Some((method.clone(), path.clone()));
        }
        _ => return Err("expected MODULE.wasm [METHOD PATH]".into()),
    }
    Ok(args)
}

fn run(args: Args) -> Result<bool, String> {
    let mut host = Host::builder(&args.module)
        .workers(args.workers)
        .build()
        .map_err(|e| e.to_string())?;
    let config = match &args.config {
        Some(path) => std::fs::read(path).map_err(|e| format!("{path}: {e}"))?,
        None => Vec::new(),
    };
    let configured = host.configure(&config).map_err(|e| e.to_string())?;
    println!(
        "configuration: {}",
        if configured { "accepted" } else { "refused" }
    );
    if configured {
        if let Some((method, path)) = &args.request {
            let forward: Vec<(&str, &str)> = args
                .forward
                .iter()
                .map(|(c, a)| (c.as_str(), a.as_str()))
                .collect();
            if !forward.is_empty() {
                host.forward_to(&forward).map_err(|e| e.to_string())?;
            }
            let mut req = Request::new(method, path);
            for (n, v) in &args.headers {
                req = req.header(n, v);
            }
            if let Some(peer) = &args.peer {
                req = req.peer(peer);
            }
            let ctx = host.request(req).map_err(|e| e.to_string())?;
            match host.outcome(ctx) {
                Outcome::Replied(r) => {
                    println!("local reply: {}", r.status);
                    for (n, v) in &r.headers {
                        println!("  {n}: {v}");
                    }
                    print!("{}", r.text());
                    if !r.text().ends_with('\n') {
                        println!();
                    }
                }
                Outcome::Forwarded(f) => {
                    println!("forwarded upstream with {} header(s)", f.headers.len())
                }
                Outcome::Reset => println!("stream reset"),
                Outcome::Paused => println!("paused"),
            }
            for call in host.pending_calls(ctx) {
                let names: Vec<&str> = call.headers.iter().map(|(n, _)| n.as_str()).collect();
                println!(
                    "pending callout to {}: {} {} (headers: {})",
                    call.cluster,
                    call.method(),
                    call.path(),
                    names.join(", ")
                );
            }
        }
    }
    println!("--- module logs");
    println!("{}", host.log_text());
    for e in host.abi_errors() {
        println!("ABI misuse: {e}");
    }
    Ok(configured)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!(
                "usage: dynedge-test-host MODULE.wasm [--config FILE] [--workers N] [--peer IP:PORT] \
                 [--header 'name: value']... [--forward CLUSTER=HOST:PORT]... [METHOD PATH]"
            );
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
