//! The standalone server: command-line settings, the Pingora server, SIGHUP reload.
//!
//! The plugin JSON is the same file the wasm filter reads. What Envoy's bootstrap says
//! (listeners, certificate, upstream, cluster addresses) comes from flags:
//!
//! ```text
//! dynedge-pingora --config examples/dynedge.json \
//!     --tls 127.0.0.1:8443 --cert server.pem --key server.key \
//!     --cluster pdns_api=127.0.0.1:18081 --upstream 127.0.0.1:8080
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use dynedge_core::Config;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::{background_service, Opt, Server};
use pingora::proxy::http_proxy_service_with_name;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::callout::{resolve, Clusters};
use crate::gateway::Gateway;
use crate::maintenance::Maintainer;
use crate::proxy::{AccessLog, DynedgeProxy, StatsEndpoint};
use crate::timeouts;

pub const USAGE: &str = "\
usage: dynedge-pingora --config FILE [--tls ADDR --cert PEM --key PEM]... [--listen ADDR]...
                       [--cluster NAME=HOST:PORT[,max_requests=N][,h2c]]... [--upstream HOST:PORT]
                       [--access-log FILE] [--stats ADDR] [--threads N] [--grace-period S]

  --config FILE            the plugin's JSON configuration (same file as for Envoy); re-read on SIGHUP
  --tls ADDR               HTTPS listener (TLS 1.2 and 1.3; HSTS on every response); repeatable
  --cert PEM, --key PEM    certificate chain and private key for the HTTPS listeners
  --listen ADDR            plain HTTP listener (tests, or behind a TLS-terminating balancer); repeatable
  --cluster NAME=HOST:PORT address of a cluster named by a backend's \"cluster\"; repeatable.
                           ,max_requests=N: at most N calls in flight (1 for PowerDNS on sqlite3)
                           ,h2c: HTTP/2 without TLS (BIND's DoH listener for the rfc2136 backend)
                           ,tls=SNI: HTTPS to it, certificate checked for SNI (webhook receivers)
                           ,HOST:PORT...: more addresses, called round robin (etcd members)
  --ca PEM                 CAs that tls= clusters trust (default: the system's)
  --upstream HOST:PORT     where every non-dynedge request is proxied (without it: 404)
  --access-log FILE        one line per request, path without its query (no secrets)
  --stats ADDR             plain HTTP metrics listener: GET /stats/prometheus, /stats; keep it on loopback
  --threads N              worker threads per listener service (default 2)
  --grace-period S         seconds SIGTERM waits for running requests (default 5)";

/// Everything the standalone server needs besides the plugin JSON.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub config: PathBuf,
    pub tls: Vec<SocketAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub listen: Vec<SocketAddr>,
    pub clusters: Clusters,
    pub upstream: Option<SocketAddr>,
    pub access_log: Option<PathBuf>,
    pub stats: Option<SocketAddr>,
    pub threads: usize,
    pub grace_period_s: u64,
}

impl Settings {
    /// Parses the flags (without the program name).
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Settings, String> {
        let mut s = Settings {
            threads: 2,
            grace_period_s: 5,
            ..Settings::default()
        };
        let mut config = None;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                return Err(USAGE.to_string());
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let addr = |v: &str| -> Result<SocketAddr, String> {
                v.parse().map_err(|e| format!("{flag} {v}: {e}"))
            };
            let number = |v: &str| -> Result<u64, String> {
                v.parse().map_err(|e| format!("{flag} {v}: {e}"))
            };
            match flag.as_str() {
                "--config" => config = Some(PathBuf::from(value)),
                "--tls" => s.tls.push(addr(&value)?),
                "--cert" => s.cert = Some(PathBuf::from(value)),
                "--key" => s.key = Some(PathBuf::from(value)),
                "--listen" => s.listen.push(addr(&value)?),
                "--cluster" => s.clusters.add_spec(&value)?,
                "--ca" => s.clusters.set_ca_file(value),
                "--upstream" => s.upstream = Some(resolve(&value)?),
                "--access-log" => s.access_log = Some(PathBuf::from(value)),
                "--stats" => s.stats = Some(addr(&value)?),
                "--threads" => s.threads = number(&value)?.clamp(1, 256) as usize,
                "--grace-period" => s.grace_period_s = number(&value)?,
                _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
            }
        }
        s.config = config.ok_or_else(|| format!("--config is required\n{USAGE}"))?;
        if s.tls.is_empty() && s.listen.is_empty() {
            return Err(format!("give at least one --tls or --listen\n{USAGE}"));
        }
        if !s.tls.is_empty() && (s.cert.is_none() || s.key.is_none()) {
            return Err("--tls needs --cert and --key".into());
        }
        Ok(s)
    }
}

/// Reads and compiles the plugin JSON; the error names the file and the JSON path.
pub fn load_config(path: &std::path::Path) -> Result<Config, String> {
    Config::from_json(&read_config(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

/// The plugin JSON's bytes, checked to compile (the error names the file and the JSON path).
pub fn read_config(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Config::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}

/// Builds the Pingora server: one service per listener kind, one [`Gateway`] shared by all.
pub fn build_server(settings: &Settings) -> Result<(Server, Arc<Gateway>), String> {
    let raw = read_config(&settings.config)?;
    let gateway = Gateway::from_json(raw, settings.clusters.clone())?;
    for w in gateway.config().warnings() {
        eprintln!("dynedge-pingora: warning: {w}");
    }
    let gateway = Arc::new(gateway);

    let run_dir = std::env::temp_dir().join(format!("dynedge-pingora-{}", std::process::id()));
    let conf = ServerConf {
        threads: settings.threads,
        grace_period_seconds: Some(settings.grace_period_s),
        graceful_shutdown_timeout_seconds: Some(settings.grace_period_s.max(1)),
        pid_file: run_dir.join("pid").display().to_string(),
        upgrade_sock: run_dir.join("upgrade.sock").display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let access_log = match &settings.access_log {
        Some(p) => Some(Arc::new(AccessLog::open(p)?)),
        None => None,
    };
    let app = |hsts| DynedgeProxy {
        gateway: gateway.clone(),
        upstream: settings.upstream,
        hsts,
        access_log: access_log.clone(),
    };
    if !settings.listen.is_empty() {
        let mut plain =
            http_proxy_service_with_name(&server.configuration, app(false), "dynedge-http");
        if let Some(proxy) = plain.app_logic_mut() {
            proxy.server_options = Some(timeouts::server_options());
        }
        for a in &settings.listen {
            plain.add_tcp(&a.to_string());
        }
        server.add_service(plain);
    }
    if let (false, Some(cert), Some(key)) = (settings.tls.is_empty(), &settings.cert, &settings.key)
    {
        let (cert, key) = (path_str(cert)?, path_str(key)?);
        check_pem(cert, key)?;
        let mut tls =
            http_proxy_service_with_name(&server.configuration, app(true), "dynedge-https");
        if let Some(proxy) = tls.app_logic_mut() {
            proxy.server_options = Some(timeouts::server_options());
        }
        for a in &settings.tls {
            // rustls in Pingora speaks TLS 1.2 and 1.3 only: the 1.2 minimum needs no setting.
            let mut s = TlsSettings::intermediate(cert, key).map_err(|e| format!("TLS: {e}"))?;
            s.enable_h2();
            tls.add_tls_with_settings(&a.to_string(), None, s);
        }
        server.add_service(tls);
    }
    if let Some(addr) = settings.stats {
        let mut stats = http_proxy_service_with_name(
            &server.configuration,
            StatsEndpoint {
                gateway: gateway.clone(),
            },
            "dynedge-stats",
        );
        stats.add_tcp(&addr.to_string());
        server.add_service(stats);
    }
    server.add_service(background_service(
        "dynedge-maintenance",
        Maintainer::new(gateway.clone()),
    ));
    server.add_service(background_service(
        "dynedge-sighup",
        ReloadOnHup {
            gateway: gateway.clone(),
            path: settings.config.clone(),
        },
    ));
    Ok((server, gateway))
}

fn path_str(p: &std::path::Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{}: not a UTF-8 path", p.display()))
}

/// Pingora's rustls listener panics on an unreadable certificate when the service starts;
/// check the files first so the operator gets a message instead.
fn check_pem(cert: &str, key: &str) -> Result<(), String> {
    match pingora::tls::load_certs_and_key_files(cert, key) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{cert} / {key}: no certificate or no key found")),
        Err(e) => Err(format!("{cert} / {key}: {e}")),
    }
}

/// Re-reads the plugin JSON on SIGHUP; a bad file is reported and the old one kept.
pub struct ReloadOnHup {
    pub gateway: Arc<Gateway>,
    pub path: PathBuf,
}

impl ReloadOnHup {
    pub fn reload(&self) -> Result<(), String> {
        let raw = read_config(&self.path)?;
        self.gateway
            .reload_json(raw)
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

#[async_trait]
impl BackgroundService for ReloadOnHup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("dynedge-pingora: no SIGHUP reload: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => match self.reload() {
                    Ok(()) => eprintln!("dynedge-pingora: SIGHUP: configuration reloaded"),
                    Err(e) => eprintln!("dynedge-pingora: SIGHUP: keeping the old configuration: {e}"),
                },
                _ = shutdown.changed() => break,
            }
        }
    }
}

/// Makes SIGHUP harmless from here on (its default action ends the process) until
/// [`ReloadOnHup`] listens for it: registering a handler once is process-wide.
pub fn ignore_sighup_until_reload_listens() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map(drop)
            .map_err(|e| format!("SIGHUP: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_build_the_settings() {
        let s = Settings::from_args(args(
            "--config c.json --tls 127.0.0.1:24443 --cert c.pem --key k.pem --listen [::1]:24080 \
             --cluster pdns_api=127.0.0.1:24081 --upstream 127.0.0.1:24090 --threads 4 --access-log a.log",
        ))
        .unwrap();
        assert_eq!(s.config, PathBuf::from("c.json"));
        assert_eq!(s.tls, vec!["127.0.0.1:24443".parse().unwrap()]);
        assert_eq!(s.listen, vec!["[::1]:24080".parse().unwrap()]);
        assert_eq!(
            s.clusters.get("pdns_api").map(|c| c.addr),
            Some("127.0.0.1:24081".parse().unwrap())
        );
        assert_eq!(s.access_log, Some(PathBuf::from("a.log")));
        assert_eq!(s.upstream, Some("127.0.0.1:24090".parse().unwrap()));
        assert_eq!(s.threads, 4);
    }

    #[test]
    fn missing_or_unknown_flags_are_refused() {
        for bad in [
            "",
            "--tls 127.0.0.1:1 --cert c --key k",
            "--config c.json",
            "--config c.json --tls 127.0.0.1:1",
            "--config c.json --listen nowhere",
            "--config c.json --listen 127.0.0.1:1 --bogus x",
            "--config c.json --listen",
        ] {
            assert!(Settings::from_args(args(bad)).is_err(), "{bad:?}");
        }
    }
}
